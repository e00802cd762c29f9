"""Who is calling: the companion app user (LWA access token) or a device (its credential).

Both authorizers answer API Gateway's simple responses. API Gateway caches each answer per identity
source for the configured period; the companion side also keeps a small in-process cache, so a warm
authorizer does not call LWA tokeninfo again for a token it verified moments ago (a cache entry never
outlives the token). Neither logs a token, nor keeps one in memory: cache keys are SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from drs_core.adapters.lwa_client import TokenInfo
from drs_core.adapters.state_repository import StateRepository
from drs_core.clock import Clock, default_clock
from drs_core.domain.credentials import credential_matches
from drs_core.domain.models import DeviceStatus
from drs_core.errors import LwaInvalidToken
from drs_core.observability import logger

_SERIAL = re.compile(r"^[A-Za-z0-9+_-]{1,64}$")
# Devices of these states may call device routes; a deregistered device may not.
_ACTIVE = frozenset({DeviceStatus.LINKED, DeviceStatus.REAUTH_REQUIRED})


class TokenVerifier(Protocol):
    """LWA tokeninfo (``LwaClient`` fits): raises ``LwaInvalidToken`` for a rejected token."""

    def token_info(self, access_token: str) -> TokenInfo: ...


@dataclass(frozen=True)
class Decision:
    """An authorizer's answer: allowed or not, and the context handed to the route's function."""

    allowed: bool
    context: Mapping[str, str]

    def simple_response(self) -> dict[str, object]:
        """API Gateway HTTP API's simple response (``enableSimpleResponses``)."""
        return {"isAuthorized": self.allowed, "context": dict(self.context)}


DENY = Decision(False, {})


def credential_from_header(header: str | None, scheme: str) -> str | None:
    """The credential of an ``Authorization: <scheme> <credential>`` header (scheme case-insensitive)."""
    if not header:
        return None
    parts = header.strip().split(" ", 1)
    if len(parts) != 2 or parts[0].lower() != scheme.lower():
        return None
    credential = parts[1].strip()
    return credential or None


class UserTokenCache:
    """Verified LWA access tokens → user id, by digest, bounded in size and in time."""

    def __init__(self, *, max_entries: int = 1024, max_age: timedelta = timedelta(minutes=5)) -> None:
        self._entries: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        self._max_entries = max_entries
        self._max_age = max_age
        self._lock = threading.Lock()

    def get(self, key: str, now: datetime) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            user_id, expires_at = entry
            if expires_at <= now:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return user_id

    def put(self, key: str, user_id: str, now: datetime, token_seconds_left: int) -> None:
        expires_at = now + min(self._max_age, timedelta(seconds=max(token_seconds_left, 0)))
        if expires_at <= now:
            return
        with self._lock:
            self._entries[key] = (user_id, expires_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def authorize_companion(
    authorization: str | None,
    *,
    client_id: str,
    verifier: TokenVerifier,
    cache: UserTokenCache,
    clock: Clock | None = None,
) -> Decision:
    """Allow a request bearing an LWA access token issued to our client id; context ``userId``.

    Tokens of another LWA application (``aud`` not ours), expired or unknown tokens are denied. An
    LWA outage raises (API Gateway answers 500): it must not look like a bad token.
    """
    token = credential_from_header(authorization, "Bearer")
    if token is None:
        return DENY
    now = (clock or default_clock()).now()
    key = hashlib.sha256(token.encode("utf-8")).hexdigest()
    user_id = cache.get(key, now)
    if user_id is not None:
        return Decision(True, {"userId": user_id})
    try:
        info = verifier.token_info(token)
    except LwaInvalidToken:
        logger.info("companion token rejected by LWA", extra={"reason": "invalid_token"})
        return DENY
    if info.aud != client_id or not info.user_id or info.expires_in <= 0:
        logger.info(
            "companion token refused", extra={"reason": "audience" if info.aud != client_id else "expired"}
        )
        return DENY
    cache.put(key, info.user_id, now, info.expires_in)
    return Decision(True, {"userId": info.user_id})


def authorize_device(
    authorization: str | None, serial: str | None, *, repository: StateRepository
) -> Decision:
    """Allow a request bearing the credential of the device whose serial is in the path.

    The credential is compared with the stored digest in constant time; a device that is unknown,
    deregistered or holds another credential is denied the same way. The context carries the serial
    and the link id the credential belongs to: API Gateway caches this answer, so the usage write, not
    this check, is what refuses a credential whose link has ended (``Attr.LINK_ID``).
    """
    credential = credential_from_header(authorization, "Device")
    if credential is None or serial is None or not _SERIAL.match(serial):
        return DENY
    device = repository.get_device(serial)
    stored = device.credential_hash if device is not None and device.status in _ACTIVE else None
    if not credential_matches(credential, stored) or device is None or not device.link_id:
        logger.info("device credential refused", extra={"serial": serial})
        return DENY
    return Decision(True, {"serial": serial, "linkId": device.link_id})
