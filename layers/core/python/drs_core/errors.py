"""Every typed error the core raises, in one place.

Adapters raise the transport-level ones (DRS, LWA); services raise the domain ones; the HTTP layer maps
``DomainError`` subclasses to ``{"error": {"code", "message"}}`` answers by their ``code``/``status``.
"""

from __future__ import annotations


class DrsError(Exception):
    """A DRS call failed."""

    def __init__(self, message: str, *, status: int | None = None, operation: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.operation = operation


class DrsBadRequest(DrsError):
    """DRS answered 400: bad client data (never retried)."""


class DrsTokenRejected(DrsBadRequest):
    """DRS answered 400 because the access token is bad, expired or revoked."""


class DrsNotFound(DrsError):
    """DRS answered 404 (unknown slot, or unknown order id)."""


class DrsRetryableError(DrsError):
    """429, 5xx, timeout or connection failure that persisted through the retry bound."""


class LwaError(Exception):
    """A Login with Amazon call failed."""

    def __init__(self, message: str, *, status: int | None = None, error: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error = error


class LwaInvalidGrant(LwaError):
    """The code is expired/reused, or the refresh token was revoked (customer must re-link)."""


class LwaInvalidClient(LwaError):
    """Our client id or secret is wrong: a deployment fault, not the customer's."""


class LwaInvalidToken(LwaError):
    """tokeninfo rejected an access token."""


class LwaRetryableError(LwaError):
    """429, 5xx, timeout or connection failure that persisted through the retry bound."""


class DomainError(Exception):
    """A rule of this product refused the request. ``code`` and ``status`` shape the HTTP answer."""

    code = "BAD_REQUEST"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DeviceNotFound(DomainError):
    code, status = "DEVICE_NOT_FOUND", 404


class SlotNotFound(DomainError):
    code, status = "SLOT_NOT_FOUND", 404


class DeviceAlreadyLinked(DomainError):
    code, status = "DEVICE_ALREADY_LINKED", 409


class InvalidAuthorizationCode(DomainError):
    code, status = "INVALID_AUTHORIZATION_CODE", 400


class NotATestDevice(DomainError):
    code, status = "NOT_A_TEST_DEVICE", 409


class ReauthRequired(DomainError):
    """The refresh token was revoked: the customer must link the device again."""

    code, status = "REAUTH_REQUIRED", 409


class TokensMissing(DomainError):
    """No tokens are stored for the device (never linked, or deregistered)."""

    code, status = "DEVICE_NOT_LINKED", 409


class InvalidTransition(DomainError):
    """An order-lifecycle event that the current state does not allow."""

    code, status = "INVALID_ORDER_TRANSITION", 409
