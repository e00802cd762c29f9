"""HTTP client for Login with Amazon: code exchange (web and PKCE), refresh, token verification.

docs/drs.md §5. Token calls are form-encoded POSTs to ``/auth/o2/token``; tokeninfo is a GET
with the access token in the query (urllib3's URL logging is redacted by ``adapters.http``). Tokens,
codes, verifiers and the client secret never appear in errors, log lines or reprs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests

from drs_core.adapters.http import RETRY_STATUSES, Timeouts, build_session
from drs_core.errors import (
    LwaError,
    LwaInvalidClient,
    LwaInvalidGrant,
    LwaInvalidRequest,
    LwaInvalidToken,
    LwaRetryableError,
)
from drs_core.observability import logger

__all__ = ["LwaClient", "TokenGrant", "TokenInfo"]

_TOKEN_PATH = "/auth/o2/token"  # noqa: S105 (a URL path, not a password)
_TOKENINFO_PATH = "/auth/o2/tokeninfo"


@dataclass(frozen=True)
class TokenGrant:
    """An LWA token answer. Both tokens are left out of the repr so a logged grant leaks nothing."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    token_type: str


@dataclass(frozen=True)
class TokenInfo:
    """What tokeninfo says about an access token: audience (client id), customer, expiry."""

    aud: str
    user_id: str
    app_id: str
    iss: str
    expires_in: int
    issued_at: int


class LwaClient:
    """Talks to the LWA token endpoints as one LWA security profile (``client_id``)."""

    def __init__(
        self,
        endpoint: str,
        client_id: str,
        client_secret: str | Callable[[], str] | None = None,
        *,
        session: requests.Session | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        """``endpoint`` is the LWA base URL (``https://api.amazon.com``, or the simulator's URL).

        ``client_secret`` may be a callable so the secret is fetched only when a call needs it (e.g. from
        Secrets Manager); it is called on every such call, so let it cache.
        """
        self._endpoint = endpoint.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._session = session or build_session()
        self._timeouts = timeouts or Timeouts()

    def __repr__(self) -> str:
        return f"LwaClient(endpoint={self._endpoint!r}, client_id={self._client_id!r})"

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str | None = None) -> TokenGrant:
        """Exchange an authorisation code for tokens.

        With ``code_verifier`` this is the PKCE exchange of the mobile SDK and sends no secret; without
        it, the web exchange, which needs the client secret.
        """
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": self._client_id,
            "redirect_uri": redirect_uri,
        }
        if code_verifier is not None:
            form["code_verifier"] = code_verifier
        else:
            secret = self._secret()
            if secret is None:
                raise ValueError("a web code exchange needs the client secret (or pass code_verifier)")
            form["client_secret"] = secret
        body = self._token_request(form, grant_type="authorization_code", secrets=(code, code_verifier))
        return _grant(body, fallback_refresh_token=None)

    def refresh(self, refresh_token: str) -> TokenGrant:
        """Get a fresh access token. LWA does not rotate refresh tokens: without a new one, the old stays."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": self._client_id}
        secret = self._secret()
        if secret is not None:
            form["client_secret"] = secret
        body = self._token_request(form, grant_type="refresh_token", secrets=(refresh_token,))
        return _grant(body, fallback_refresh_token=refresh_token)

    def token_info(self, access_token: str) -> TokenInfo:
        """Verify an access token and read who it belongs to; ``LwaInvalidToken`` when LWA rejects it."""
        status, body = self._send(
            "tokeninfo",
            "GET",
            _TOKENINFO_PATH,
            params={"access_token": access_token},
            secrets=(access_token,),
            log_extra={},
        )
        if status == 200:
            return TokenInfo(
                aud=str(body.get("aud", "")),
                user_id=str(body.get("user_id", "")),
                app_id=str(body.get("app_id", "")),
                iss=str(body.get("iss", "")),
                expires_in=int(body.get("exp", 0)),
                issued_at=int(body.get("iat", 0)),
            )
        raise _error_for("tokeninfo", status, body)

    def _secret(self) -> str | None:
        secret = self._client_secret
        return secret() if callable(secret) else secret

    def _token_request(
        self, form: dict[str, str], *, grant_type: str, secrets: Iterable[str | None]
    ) -> dict[str, Any]:
        all_secrets = (*secrets, form.get("client_secret"))
        status, body = self._send(
            "token", "POST", _TOKEN_PATH, data=form, secrets=all_secrets, log_extra={"grant_type": grant_type}
        )
        if status == 200:
            return body
        raise _error_for("token", status, body)

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        secrets: Iterable[str | None],
        log_extra: dict[str, Any],
        data: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; return (status, JSON object body) or raise ``LwaRetryableError``/``LwaError``.

        The body is scrubbed of every value in ``secrets`` before anything reads it for a message.
        """
        started = time.monotonic()
        status: int | None = None
        try:
            response = self._session.request(
                method,
                self._endpoint + path,
                data=data,
                params=params,
                headers={"Accept": "application/json"},
                timeout=self._timeouts.as_requests(),
            )
            status = response.status_code
        except (requests.Timeout, requests.ConnectionError) as exc:
            # "from None": urllib3's error text quotes the URL, and the tokeninfo URL holds the token.
            raise LwaRetryableError(f"{operation}: no answer after retries ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise LwaError(f"{operation}: request failed ({type(exc).__name__})") from None
        finally:
            logger.debug(
                "LWA call",
                extra={
                    "operation": operation,
                    "status": status,
                    "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
                    **log_extra,
                },
            )
        return response.status_code, _scrubbed_json(response, [s for s in secrets if s])


def _grant(body: dict[str, Any], *, fallback_refresh_token: str | None) -> TokenGrant:
    access_token = body.get("access_token")
    refresh_token = body.get("refresh_token") or fallback_refresh_token
    if not access_token or not refresh_token:
        raise LwaError("token: answer lacks access_token or refresh_token", status=200)
    return TokenGrant(
        access_token=str(access_token),
        refresh_token=str(refresh_token),
        expires_in=int(body.get("expires_in", 0)),
        token_type=str(body.get("token_type", "bearer")),
    )


def _scrubbed_json(response: requests.Response, secrets: list[str]) -> dict[str, Any]:
    """The JSON object body ({} if none); string values that quote one of ``secrets`` get it masked."""
    try:
        body = response.json() if response.content else {}
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    if response.status_code == 200:
        # A success body carries the tokens we asked for; nothing of it goes into messages.
        return body
    scrubbed: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, "***")
        scrubbed[key] = value
    return scrubbed


def _error_for(operation: str, status: int, body: dict[str, Any]) -> LwaError:
    """Map a final non-200 answer (OAuth 2 error body) to the typed error."""
    error = str(body.get("error", ""))
    description = str(body.get("error_description", ""))
    text = f"{operation}: HTTP {status}" + (f" {error}" if error else "")
    if description:
        text += f": {description}"
    # OAuth 2 answers a failed client authentication with 401 (or 400) invalid_client.
    if (status == 401 and operation == "token") or (status in (400, 401) and error == "invalid_client"):
        cls: type[LwaError] = LwaInvalidClient
    elif status == 400 and error == "invalid_grant":
        cls = LwaInvalidGrant
    elif status == 400 and error == "invalid_request":
        cls = LwaInvalidRequest
    elif status == 400 and error == "invalid_token":
        cls = LwaInvalidToken
    elif status in RETRY_STATUSES or status >= 500:
        cls = LwaRetryableError
    else:
        cls = LwaError
    return cls(text, status=status, error=error)
