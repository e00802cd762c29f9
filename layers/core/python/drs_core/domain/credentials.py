"""Device credentials: 256 random bits shown once at linking; only their SHA-256 digest is stored.

A credential is a random token, not a password: a fast, unsalted digest is enough (nothing to brute
force in 2^256) and lets the authorizer check it with one GetItem and a constant-time compare.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CREDENTIAL_BYTES = 32  # 256 bits of entropy (the floor)
# Compared against when a device has no stored digest, so a miss costs the same as a mismatch.
_NO_DIGEST = "0" * 64


def new_device_credential() -> str:
    """A fresh device credential (URL-safe text, 43 characters, 256 random bits)."""
    return secrets.token_urlsafe(CREDENTIAL_BYTES)


def new_link_id() -> str:
    """A fresh link id (96 random bits): names one link of a device, so its credential can be revoked."""
    return secrets.token_urlsafe(12)


def credential_digest(credential: str) -> str:
    """The stored form of a credential: its SHA-256 as 64 hex digits."""
    return hashlib.sha256(credential.encode("utf-8")).hexdigest()


def credential_matches(credential: str, stored_digest: str | None) -> bool:
    """True when ``credential`` hashes to ``stored_digest``, compared in constant time."""
    presented = credential_digest(credential)
    expected = stored_digest or _NO_DIGEST
    return hmac.compare_digest(presented, expected) and stored_digest is not None
