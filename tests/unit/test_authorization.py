"""Authorizer rules without AWS: header parsing, the companion token cache, audience and expiry checks,
and device credentials (random, hashed, compared in constant time)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from drs_core.adapters.lwa_client import TokenInfo
from drs_core.clock import ManualClock
from drs_core.domain.credentials import credential_digest, credential_matches, new_device_credential
from drs_core.errors import LwaInvalidToken
from drs_core.services.authorization import UserTokenCache, authorize_companion, credential_from_header

CLIENT_ID = "amzn1.application-oa2-client.ours"


class FakeTokenInfo:
    """tokeninfo answers from a table; counts calls."""

    def __init__(self, answers: dict[str, TokenInfo]) -> None:
        self.answers = answers
        self.calls = 0

    def token_info(self, access_token: str) -> TokenInfo:
        self.calls += 1
        if access_token not in self.answers:
            raise LwaInvalidToken("tokeninfo: HTTP 400 invalid_token", status=400, error="invalid_token")
        return self.answers[access_token]


def info(user: str, *, aud: str = CLIENT_ID, expires_in: int = 3600) -> TokenInfo:
    return TokenInfo(aud=aud, user_id=user, app_id="app", iss="lwa", expires_in=expires_in, issued_at=0)


def test_credential_from_header_needs_the_scheme_and_a_value() -> None:
    # Given headers of several shapes
    # When they are parsed for the Bearer and Device schemes
    # Then only "<scheme> <value>" yields the value (scheme case-insensitive)
    assert credential_from_header("Bearer abc", "Bearer") == "abc"
    assert credential_from_header("bearer  abc ", "Bearer") == "abc"
    assert credential_from_header("Device abc", "Bearer") is None
    assert credential_from_header("abc", "Device") is None
    assert credential_from_header("Device ", "Device") is None
    assert credential_from_header(None, "Device") is None


def test_companion_tokens_of_another_audience_or_expired_are_denied() -> None:
    # Given tokeninfo knowing a good, a foreign and an expired token
    verifier = FakeTokenInfo(
        {
            "good": info("u1"),
            "foreign": info("u2", aud="amzn1.application-oa2-client.theirs"),
            "old": info("u3", expires_in=0),
        }
    )
    cache, clock = UserTokenCache(), ManualClock()

    # When each is presented
    def decide(header: str | None) -> bool:
        return authorize_companion(
            header, client_id=CLIENT_ID, verifier=verifier, cache=cache, clock=clock
        ).allowed

    # Then only the good one passes, with its user id
    assert [decide(h) for h in ("Bearer good", "Bearer foreign", "Bearer old", "Bearer unknown", None)] == [
        True,
        False,
        False,
        False,
        False,
    ]
    good = authorize_companion(
        "Bearer good", client_id=CLIENT_ID, verifier=verifier, cache=cache, clock=clock
    )
    assert good.simple_response() == {"isAuthorized": True, "context": {"userId": "u1"}}


def test_companion_cache_never_outlives_the_token_nor_five_minutes() -> None:
    # Given a token with 2 minutes left and one with an hour left, each verified once
    verifier = FakeTokenInfo({"short": info("u1", expires_in=120), "long": info("u2")})
    cache, clock = UserTokenCache(), ManualClock()
    for token in ("short", "long"):
        authorize_companion(
            f"Bearer {token}", client_id=CLIENT_ID, verifier=verifier, cache=cache, clock=clock
        )
    assert verifier.calls == 2

    def ask(token: str) -> None:
        authorize_companion(
            f"Bearer {token}", client_id=CLIENT_ID, verifier=verifier, cache=cache, clock=clock
        )

    # When both come back within 2 minutes, then after 3 minutes, then after 6
    ask("short"), ask("long")
    calls_within = verifier.calls
    clock.advance(timedelta(minutes=3).total_seconds())
    ask("short"), ask("long")
    calls_after_3 = verifier.calls
    clock.advance(timedelta(minutes=3).total_seconds())
    ask("long")

    # Then the cache answered at first; the short token expired from it at 2 minutes, the long at 5
    assert calls_within == 2
    assert calls_after_3 == 3
    assert verifier.calls == 4


def test_companion_cache_is_bounded_and_keyed_by_digest() -> None:
    # Given a cache of two entries
    cache, clock = UserTokenCache(max_entries=2), ManualClock()
    now = clock.now()

    # When three tokens are stored
    for name in ("a", "b", "c"):
        cache.put(hashlib.sha256(name.encode()).hexdigest(), f"user-{name}", now, 3600)

    # Then the oldest went, and nothing is found under a plaintext key
    assert cache.get(hashlib.sha256(b"a").hexdigest(), now) is None
    assert cache.get(hashlib.sha256(b"c").hexdigest(), now) == "user-c"
    assert cache.get("c", now) is None


def test_device_credentials_are_random_256_bit_and_checked_against_their_digest() -> None:
    # Given two fresh credentials
    first, second = new_device_credential(), new_device_credential()

    # When they are hashed and compared
    digest = credential_digest(first)

    # Then they differ, carry 256 bits (43 URL-safe characters), and only the right one matches
    assert first != second and len(first) == 43
    assert digest == hashlib.sha256(first.encode()).hexdigest() and first not in digest
    assert credential_matches(first, digest)
    assert not credential_matches(second, digest)
    assert not credential_matches(first, None)
