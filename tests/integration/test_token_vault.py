"""TokenVault against moto DynamoDB + KMS: caching, refresh, races, revocation, and no plaintext leaks."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from drs_core import schema
from drs_core.adapters.token_vault import TokenVault
from drs_core.clock import ManualClock
from drs_core.errors import LwaInvalidGrant, ReauthRequired, TokensMissing
from tests.support import logs

REGION = "us-east-1"
TABLE = "tokens"
captured_logs = logs.captured_logs
SERIAL = "SN-0001"
OTHER_SERIAL = "SN-0002"


@dataclass(frozen=True)
class Grant:
    """Same shape as ``lwa_client.TokenGrant`` (the vault types against a Protocol)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    token_type: str = "bearer"


def new_token(kind: str) -> str:
    # Distinctive, unguessable strings, so finding one in storage or logs can only be a leak.
    return f"Atz{kind}|{kind}-SECRET-{uuid.uuid4().hex}"


class FakeLwa:
    """A refresher that counts calls, issues fresh access tokens and can be told to misbehave."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.calls: list[str] = []
        self.issued: list[str] = []
        self.revoked = False
        self.rotate_to: str | None = None
        # Runs inside the next refresh, between the vault's read and its write: simulates a rival.
        self.during_refresh: Callable[[], None] | None = None

    def refresh(self, refresh_token: str) -> Grant:
        self.calls.append(refresh_token)
        if self.revoked:
            raise LwaInvalidGrant("The refresh token is invalid", status=400, error="invalid_grant")
        if self.during_refresh is not None:
            rival, self.during_refresh = self.during_refresh, None
            rival()
        access = new_token("a")
        self.issued.append(access)
        return Grant(access, self.rotate_to or refresh_token, self.expires_in)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        kms = boto3.client("kms", region_name=REGION)
        dynamodb.create_table(**schema.tokens_table_kwargs(TABLE))
        key_id = kms.create_key(Description="tokens")["KeyMetadata"]["KeyId"]
        yield {"dynamodb": dynamodb, "kms": kms, "key_id": key_id}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def lwa() -> FakeLwa:
    return FakeLwa()


def make_vault(aws: dict[str, Any], refresher: FakeLwa, clock: ManualClock) -> TokenVault:
    return TokenVault(TABLE, aws["key_id"], refresher, clock, dynamodb=aws["dynamodb"], kms=aws["kms"])


@pytest.fixture
def vault(aws: dict[str, Any], lwa: FakeLwa, clock: ManualClock) -> TokenVault:
    return make_vault(aws, lwa, clock)


@pytest.fixture
def linked(vault: TokenVault) -> Grant:
    grant = Grant(new_token("a"), new_token("r"), 3600)
    vault.store(SERIAL, grant)
    return grant


def raw_item(aws: dict[str, Any], serial: str = SERIAL) -> dict[str, Any] | None:
    return aws["dynamodb"].get_item(TableName=TABLE, Key={"serial": {"S": serial}}).get("Item")


def test_store_then_access_serves_the_cached_token_without_refreshing(
    vault: TokenVault, lwa: FakeLwa, linked: Grant, aws: dict[str, Any]
) -> None:
    # Given a freshly stored link (setup)
    # When the access token is asked for twice
    first = vault.access_token(SERIAL)
    second = vault.access_token(SERIAL)
    # Then the stored token is returned, LWA is not called, and the item is versioned binary ciphertext
    assert first == second == linked.access_token
    assert lwa.calls == []
    item = raw_item(aws)
    assert item is not None
    assert item["version"] == {"N": "1"}
    assert set(item) == {"serial", "refreshTokenCt", "accessTokenCt", "accessExpiresAt", "version"}
    assert isinstance(item["accessTokenCt"]["B"], bytes)
    assert isinstance(item["refreshTokenCt"]["B"], bytes)


def test_store_again_overwrites_the_previous_link_and_bumps_the_version(
    vault: TokenVault, linked: Grant, aws: dict[str, Any]
) -> None:
    # Given a link already stored (setup)
    relink = Grant(new_token("a"), new_token("r"), 3600)
    # When the device is linked again
    vault.store(SERIAL, relink)
    # Then the new link's token is served and the version moved on
    assert vault.access_token(SERIAL) == relink.access_token
    assert raw_item(aws)["version"] == {"N": "2"}


def test_token_is_cached_until_five_minutes_before_expiry_then_refreshed(
    vault: TokenVault, lwa: FakeLwa, linked: Grant, clock: ManualClock
) -> None:
    # Given a token valid for one hour, with 301 s of life left after the advance
    clock.advance(3600 - 301)
    # When asked for it
    still_cached = vault.access_token(SERIAL)
    # Then it is still served from the cache
    assert still_cached == linked.access_token
    assert lwa.calls == []
    # When one more second passes (exactly 5 minutes left)
    clock.advance(1)
    refreshed = vault.access_token(SERIAL)
    # Then LWA is called with the stored refresh token, and the new token is cached from then on
    assert lwa.calls == [linked.refresh_token]
    assert refreshed == lwa.issued[0] != linked.access_token
    clock.advance(3600 - 301)
    assert vault.access_token(SERIAL) == refreshed
    assert len(lwa.calls) == 1


def test_force_refresh_refreshes_a_still_valid_token(
    vault: TokenVault, lwa: FakeLwa, linked: Grant, aws: dict[str, Any]
) -> None:
    # Given a valid cached token (setup)
    # When a refresh is forced (e.g. DRS rejected the token)
    token = vault.access_token(SERIAL, force_refresh=True)
    # Then a new token is fetched, stored and the version bumped
    assert lwa.calls == [linked.refresh_token]
    assert token == lwa.issued[0]
    assert raw_item(aws)["version"] == {"N": "2"}
    assert vault.access_token(SERIAL) == token


def test_a_rotated_refresh_token_is_kept(vault: TokenVault, lwa: FakeLwa, linked: Grant) -> None:
    # Given LWA hands out a new refresh token on the next refresh
    rotated = new_token("r")
    lwa.rotate_to = rotated
    vault.access_token(SERIAL, force_refresh=True)
    # When the vault refreshes again
    lwa.rotate_to = None
    vault.access_token(SERIAL, force_refresh=True)
    # Then the second refresh used the rotated refresh token
    assert lwa.calls == [linked.refresh_token, rotated]


def test_concurrent_refresh_loser_returns_the_winners_token_without_failing(
    aws: dict[str, Any], vault: TokenVault, lwa: FakeLwa, linked: Grant, clock: ManualClock
) -> None:
    # Given two invocations (two vaults) that both read the same near-expiry version
    clock.advance(3500)
    rival_lwa = FakeLwa()
    rival = make_vault(aws, rival_lwa, clock)
    rival_tokens: list[str] = []
    lwa.during_refresh = lambda: rival_tokens.append(rival.access_token(SERIAL))
    # When the first one's refresh completes after the rival already wrote its token
    token = vault.access_token(SERIAL)
    # Then both refreshed, the loser's conditional write failed quietly and it returns the stored token
    assert len(lwa.calls) == 1 and len(rival_lwa.calls) == 1
    assert rival_tokens == [rival_lwa.issued[0]]
    assert token == rival_lwa.issued[0]
    assert raw_item(aws)["version"] == {"N": "2"}
    # And a later call uses the stored token without refreshing again
    assert vault.access_token(SERIAL) == rival_lwa.issued[0]
    assert len(lwa.calls) == 1 and len(rival_lwa.calls) == 1


def test_concurrent_refresh_loser_keeps_its_own_token_when_the_stored_one_is_nearly_expired(
    aws: dict[str, Any], vault: TokenVault, lwa: FakeLwa, linked: Grant, clock: ManualClock
) -> None:
    # Given a rival that stores a token with only 2 minutes of life
    clock.advance(3500)
    rival_lwa = FakeLwa(expires_in=120)
    rival = make_vault(aws, rival_lwa, clock)
    lwa.during_refresh = lambda: rival.access_token(SERIAL)
    # When the first invocation loses the write
    token = vault.access_token(SERIAL)
    # Then it returns its own fresh token (valid at LWA) rather than the nearly expired one
    assert token == lwa.issued[0]
    assert raw_item(aws)["version"] == {"N": "2"}


def test_relink_during_refresh_returns_the_new_links_token(
    aws: dict[str, Any], vault: TokenVault, lwa: FakeLwa, linked: Grant, clock: ManualClock
) -> None:
    # Given the device is re-linked while an invocation is refreshing
    clock.advance(3500)
    relink = Grant(new_token("a"), new_token("r"), 3600)
    lwa.during_refresh = lambda: make_vault(aws, FakeLwa(), clock).store(SERIAL, relink)
    # When the refresh tries to write
    token = vault.access_token(SERIAL)
    # Then the new link's token wins and its refresh token is untouched
    assert token == relink.access_token
    lwa.during_refresh = None
    vault.access_token(SERIAL, force_refresh=True)
    assert lwa.calls[-1] == relink.refresh_token


def test_destroy_during_refresh_reports_tokens_missing(
    aws: dict[str, Any], vault: TokenVault, lwa: FakeLwa, linked: Grant, clock: ManualClock
) -> None:
    # Given the device is unlinked while an invocation is refreshing
    clock.advance(3500)
    lwa.during_refresh = lambda: make_vault(aws, FakeLwa(), clock).destroy(SERIAL)
    # When the refresh tries to write
    # Then the caller learns the device has no tokens, and nothing is written back
    with pytest.raises(TokensMissing):
        vault.access_token(SERIAL)
    assert raw_item(aws) is None


def test_invalid_grant_raises_reauth_required(
    vault: TokenVault, lwa: FakeLwa, linked: Grant, clock: ManualClock, aws: dict[str, Any]
) -> None:
    # Given the customer revoked the refresh token and the cached token is near expiry
    lwa.revoked = True
    clock.advance(3400)
    # When a token is needed
    # Then ReauthRequired is raised (the caller marks the device) and the stored item is unchanged
    with pytest.raises(ReauthRequired) as caught:
        vault.access_token(SERIAL)
    assert caught.value.code == "REAUTH_REQUIRED"
    assert raw_item(aws)["version"] == {"N": "1"}


def test_missing_tokens_raise_tokens_missing(vault: TokenVault, lwa: FakeLwa) -> None:
    # Given a device that was never linked
    # When a token is asked for
    # Then TokensMissing is raised without calling LWA
    with pytest.raises(TokensMissing):
        vault.access_token("SN-NEVER")
    assert lwa.calls == []


def test_destroy_removes_tokens_and_is_idempotent(
    vault: TokenVault, linked: Grant, aws: dict[str, Any]
) -> None:
    # Given stored tokens (setup)
    # When they are destroyed twice
    vault.destroy(SERIAL)
    vault.destroy(SERIAL)
    # Then the item is gone and the device has no tokens
    assert raw_item(aws) is None
    with pytest.raises(TokensMissing):
        vault.access_token(SERIAL)


@pytest.mark.parametrize("attribute", ["accessTokenCt", "refreshTokenCt"])
def test_ciphertext_moved_to_another_serial_does_not_decrypt(
    vault: TokenVault, linked: Grant, aws: dict[str, Any], attribute: str
) -> None:
    # Given a second device, and the first device's ciphertext copied into its item
    vault.store(OTHER_SERIAL, Grant(new_token("a"), new_token("r"), 3600))
    stolen = raw_item(aws, SERIAL)[attribute]
    aws["dynamodb"].update_item(
        TableName=TABLE,
        Key={"serial": {"S": OTHER_SERIAL}},
        UpdateExpression="SET #a = :ct",
        ExpressionAttributeNames={"#a": attribute},
        ExpressionAttributeValues={":ct": stolen},
    )
    # When the second device's token is used (a refresh decrypts the refresh token)
    # Then KMS rejects it: the encryption context binds it to the first serial
    with pytest.raises(ClientError) as caught:
        vault.access_token(OTHER_SERIAL, force_refresh=attribute == "refreshTokenCt")
    assert caught.value.response["Error"]["Code"] == "InvalidCiphertextException"
    # And the same ciphertext still decrypts for its own serial
    assert vault.access_token(SERIAL) == linked.access_token


def test_no_plaintext_token_is_stored_or_logged(
    aws: dict[str, Any], clock: ManualClock, captured_logs: pytest.CaptureFixture[str]
) -> None:
    # Given every path a token takes: store, cached read, refresh, a race, a rotation and a revocation
    lwa = FakeLwa()
    vault = make_vault(aws, lwa, clock)
    first = Grant(new_token("a"), new_token("r"), 3600)
    other = Grant(new_token("a"), new_token("r"), 3600)
    vault.store(SERIAL, first)
    vault.store(OTHER_SERIAL, other)
    vault.access_token(SERIAL)
    clock.advance(3500)
    rival_lwa = FakeLwa()
    lwa.during_refresh = lambda: make_vault(aws, rival_lwa, clock).access_token(SERIAL)
    vault.access_token(SERIAL)
    lwa.rotate_to = new_token("r")
    vault.access_token(OTHER_SERIAL, force_refresh=True)
    lwa.rotate_to = None
    lwa.revoked = True
    with pytest.raises(ReauthRequired) as revoked:
        vault.access_token(SERIAL, force_refresh=True)
    secrets = [
        first.access_token,
        first.refresh_token,
        other.access_token,
        other.refresh_token,
        lwa.rotate_to or "",
        *lwa.issued,
        *rival_lwa.issued,
        *lwa.calls,
    ]
    secrets = [secret for secret in secrets if secret]
    assert len(secrets) >= 7

    # When the raw table and everything printed are inspected
    items = aws["dynamodb"].scan(TableName=TABLE)["Items"]
    captured = captured_logs.readouterr()
    output = captured.out + captured.err

    # Then no token appears in any attribute, as text or bytes
    assert len(items) == 2
    for item in items:
        for value in item.values():
            raw = next(iter(value.values()))
            for secret in secrets:
                if isinstance(raw, bytes):
                    assert secret.encode() not in raw
                else:
                    assert secret not in str(raw)
    # And the logs, which did record the events by serial, contain none either
    for event in ("stored", "cached", "refreshed", "raced", "revoked"):
        assert f'"tokenEvent":"{event}"' in output
    assert SERIAL in output
    for secret in secrets:
        assert secret not in output
        assert secret not in str(revoked.value) and secret not in repr(revoked.value)
