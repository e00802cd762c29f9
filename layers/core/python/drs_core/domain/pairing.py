"""Pairing codes: the proof that whoever links a serial holds the device (docs/api.md §1, linking).

DRS v1 never tells the backend which serial an LWA consent was for, so the consent alone cannot bind a
serial to a customer. At manufacturing every device gets a random pairing code, printed on it or shown
by it; the backend keeps only a salted, slow hash of each (the device registry), and the app sends the
code it read from the device with the registration.

The hash is scrypt (RFC 7914, in ``hashlib``: no dependency) with a per-device 16-byte salt, N = 2^14,
r = 8, p = 1 (16 MiB, about a tenth of a second). The code is short (10 base-32 symbols, 50 bits), so a
fast hash would not protect it if the registry leaked: one GPU tries ~10^10 SHA-256 a second, which
finds a 50-bit code in about a day and a half per device; scrypt's memory-hard cost brings that to
centuries. The salt makes every device's search separate. Online guessing is bounded by the registry's
failed-attempt lock, not by the hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# Crockford's base 32: no I, L, O, U, so a code read off a label is not misread.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_SYMBOLS = 10  # 50 bits
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32
_SCHEME = "scrypt"
# Read-alike symbols a person may type for the ones in the alphabet.
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})


def new_pairing_code() -> str:
    """A fresh pairing code, grouped for reading: ``XXXXX-XXXXX``."""
    symbols = "".join(secrets.choice(ALPHABET) for _ in range(CODE_SYMBOLS))
    return f"{symbols[:5]}-{symbols[5:]}"


def normalized(code: str) -> str:
    """The code as hashed: upper case, without spaces or dashes, read-alikes mapped (``O`` → ``0``)."""
    return code.upper().replace("-", "").replace(" ", "").translate(_READ_AS)


def _derive(code: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        normalized(code).encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES, maxmem=64 * 1024**2
    )


def hash_pairing_code(code: str) -> str:
    """The stored form of a pairing code: ``scrypt$N$r$p$<salt>$<key>`` (base64), parameters included
    so they can be raised later without invalidating the codes already stored."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(code, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    encoded = [base64.b64encode(part).decode("ascii") for part in (salt, key)]
    return "$".join([_SCHEME, str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), *encoded])


def pairing_code_matches(code: str, stored: str) -> bool:
    """True when ``code`` is the one whose hash is ``stored`` (constant-time compare)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(key)
        derived = _derive(code, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(derived, expected)
