"""Every typed error the core raises, in one place.

Adapters raise the transport-level ones (DRS, LWA); services raise the domain ones; the HTTP layer maps
``DomainError`` subclasses to ``{"error": {"code", "message"}}`` answers by their ``code``/``status``.
"""

from __future__ import annotations


class DrsError(Exception):
    """A DRS call failed. ``error_type`` is DRS's ``x-amzn-ErrorType`` (its name part, e.g.
    ``InvalidTokenException``) and ``request_id`` its ``x-amzn-RequestId``, when DRS sent them."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        operation: str = "",
        error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.operation = operation
        self.error_type = error_type
        self.request_id = request_id


class DrsBadRequest(DrsError):
    """DRS answered 400: bad client data (never retried)."""


class DrsTokenRejected(DrsBadRequest):
    """DRS answered 400 ``InvalidTokenException``: the access token is bad, expired or revoked."""


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


class LwaInvalidRequest(LwaError):
    """LWA could not read the request (400 ``invalid_request``): on a code exchange, a missing or
    malformed authorisation code, which is the app's input."""


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


class InvalidExitUri(DomainError):
    """The settings page's ``exitUri`` must be an absolute URI with a scheme (drs-web's rule)."""

    code, status = "INVALID_EXIT_URI", 400


class ReportJobIncomplete(Exception):
    """Some devices of a report job are not done (a retryable fault, or leased by another worker):
    the job's SQS message goes back to the queue and the next delivery finishes it."""

    def __init__(self, message: str, *, serials: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.serials = serials


class UnknownSlot(DomainError):
    """A usage reading names a slot the device does not have (nothing of the request is stored)."""

    code, status = "UNKNOWN_SLOT", 400


class PairingCodeRejected(DomainError):
    """Linking without proof of possession: an unknown serial, or a missing or wrong pairing code.
    Both answer the same, so the answer does not tell which serials exist."""

    code, status = "PAIRING_CODE_REJECTED", 403


class PairingLocked(DomainError):
    """Too many wrong pairing codes for this serial in a row: linking it waits out the lock."""

    code, status = "PAIRING_LOCKED", 429


class ModelMismatch(DomainError):
    """The registration names a model other than the one the device was manufactured as."""

    code, status = "MODEL_MISMATCH", 400


class ConflictingReadings(DomainError):
    """One request reports two different readings of one slot at one ``observedAt``."""

    code, status = "CONFLICTING_READINGS", 400


class CredentialRevoked(DomainError):
    """The device credential belongs to a link that has ended (unlinked, re-linked or deregistered).

    403 like API Gateway's own denial once its cached authorizer answer expires: a device sees the same
    status either way.
    """

    code, status = "CREDENTIAL_REVOKED", 403


class InvalidReading(DomainError):
    """A usage reading that is well-formed but unacceptable (e.g. observed too far in the future)."""

    code, status = "INVALID_READING", 400


class RequestInProgress(DomainError):
    """The same ``Idempotency-Key`` is being processed right now: retry shortly for its answer."""

    code, status = "REQUEST_IN_PROGRESS", 409


class IdempotencyKeyReused(DomainError):
    """An ``Idempotency-Key`` already used for a different request body."""

    code, status = "IDEMPOTENCY_KEY_REUSED", 422


class SlotBusy(DomainError):
    """Concurrent writers kept changing a slot while a reading was applied: retry the request."""

    code, status = "SLOT_BUSY", 503
