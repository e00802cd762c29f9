"""Per-device LWA tokens, encrypted with KMS, in the tokens table.

The access token is cached (encrypted) until 5 minutes before it expires, then refreshed with the
refresh token. Concurrent refreshes are settled by a conditional write on the item's ``version``: the
loser keeps the winner's token (or its own, both being valid LWA tokens), never fails. Each ciphertext
is bound to its serial by the KMS encryption context, so a ciphertext copied to another device's item
does not decrypt. Plaintext tokens never leave this module except as ``access_token``'s return value:
not stored, not logged, not in exception messages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from botocore.exceptions import ClientError

from drs_core import schema
from drs_core.clock import Clock
from drs_core.errors import LwaInvalidGrant, ReauthRequired, TokensMissing
from drs_core.observability import logger

# Refresh once the cached access token has this little life left (docs/architecture.md §2).
REFRESH_MARGIN = timedelta(minutes=5)

_ATTR_REFRESH = "refreshTokenCt"
_ATTR_ACCESS = "accessTokenCt"
_ATTR_EXPIRES = "accessExpiresAt"
_ATTR_VERSION = "version"
# A linking that exchanged its code but did not finish keeps its tokens under this key (see
# ``hold_pending_link``); the tokens table's TTL attribute removes one nobody came back for.
_PENDING_LINK_PREFIX = "PENDING_LINK#"
_ATTR_OWNER = "ownerId"
_ATTR_CODE_DIGEST = "codeDigest"
_ATTR_TTL = schema.TOKENS_TTL_ATTR
# How long a retry may resume a half-done linking: the app retries within seconds or minutes; a day
# covers a phone that lost its network. After that the customer consents again.
PENDING_LINK_LIFETIME = timedelta(days=1)


@dataclass(frozen=True)
class HeldGrant:
    """The tokens a pending linking kept (``TokenGrantLike``); both tokens stay out of the repr."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int


class TokenGrantLike(Protocol):
    """What the vault reads from an LWA token answer (``lwa_client.TokenGrant`` fits)."""

    @property
    def access_token(self) -> str: ...

    @property
    def refresh_token(self) -> str: ...

    @property
    def expires_in(self) -> int: ...


class TokenRefresher(Protocol):
    """Exchanges a refresh token for a new grant (the LWA client); raises ``LwaInvalidGrant`` if revoked."""

    def refresh(self, refresh_token: str) -> TokenGrantLike: ...


class TokenVault:
    """Stores, serves and refreshes one device's LWA tokens."""

    def __init__(
        self,
        table_name: str,
        kms_key_id: str,
        refresher: TokenRefresher,
        clock: Clock,
        *,
        dynamodb: Any = None,
        kms: Any = None,
    ) -> None:
        self._table_name = table_name
        self._kms_key_id = kms_key_id
        self._refresher = refresher
        self._clock = clock
        self._dynamodb_client = dynamodb
        self._kms_client = kms

    # Clients are built on first use: importing or constructing the vault costs no AWS setup.
    @property
    def _dynamodb(self) -> Any:
        if self._dynamodb_client is None:
            import boto3

            self._dynamodb_client = boto3.client("dynamodb")
        return self._dynamodb_client

    @property
    def _kms(self) -> Any:
        if self._kms_client is None:
            import boto3

            self._kms_client = boto3.client("kms")
        return self._kms_client

    def store(self, serial: str, grant: TokenGrantLike) -> None:
        """Store a fresh link's tokens, replacing any previous link's, and bump the item's version.

        An UpdateItem rather than a PutItem, so the version keeps increasing across re-links and an
        in-flight refresh from the previous link loses its conditional write instead of overwriting.
        """
        expires_at = self._expires_at(grant.expires_in)
        self._dynamodb.update_item(
            TableName=self._table_name,
            Key={"serial": {"S": serial}},
            UpdateExpression=("SET #rt = :rt, #at = :at, #exp = :exp, #v = if_not_exists(#v, :zero) + :one"),
            ExpressionAttributeNames={
                "#rt": _ATTR_REFRESH,
                "#at": _ATTR_ACCESS,
                "#exp": _ATTR_EXPIRES,
                "#v": _ATTR_VERSION,
            },
            ExpressionAttributeValues={
                ":rt": {"B": self._encrypt(serial, grant.refresh_token)},
                ":at": {"B": self._encrypt(serial, grant.access_token)},
                ":exp": {"N": str(expires_at)},
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
            },
        )
        logger.info("device tokens stored", extra={"serial": serial, "tokenEvent": "stored"})

    def access_token(self, serial: str, *, force_refresh: bool = False) -> str:
        """A valid LWA access token for the device, refreshed when it has 5 minutes or less left.

        Raises ``TokensMissing`` when the device has no tokens, ``ReauthRequired`` when LWA has revoked
        the refresh token (the caller marks the device).
        """
        item = self._read(serial)
        if item is None:
            raise TokensMissing(f"no tokens stored for device {serial}")
        if not force_refresh and self._is_fresh(item):
            logger.debug("access token served from cache", extra={"serial": serial, "tokenEvent": "cached"})
            return self._decrypt(serial, item[_ATTR_ACCESS]["B"])
        return self._refresh(serial, item)

    def destroy(self, serial: str) -> None:
        """Delete the device's tokens; deleting tokens that are already gone is not an error."""
        self._dynamodb.delete_item(TableName=self._table_name, Key={"serial": {"S": serial}})
        logger.info("device tokens destroyed", extra={"serial": serial, "tokenEvent": "destroyed"})

    def _refresh(self, serial: str, item: dict[str, Any]) -> str:
        refresh_token = self._decrypt(serial, item[_ATTR_REFRESH]["B"])
        try:
            grant = self._refresher.refresh(refresh_token)
        except LwaInvalidGrant as err:
            logger.warning("refresh token rejected by LWA", extra={"serial": serial, "tokenEvent": "revoked"})
            raise ReauthRequired(f"device {serial} must be linked again") from err

        version = int(item[_ATTR_VERSION]["N"])
        expires_at = self._expires_at(grant.expires_in)
        update = "SET #at = :at, #exp = :exp, #v = :next"
        names = {"#at": _ATTR_ACCESS, "#exp": _ATTR_EXPIRES, "#v": _ATTR_VERSION}
        values: dict[str, Any] = {
            ":at": {"B": self._encrypt(serial, grant.access_token)},
            ":exp": {"N": str(expires_at)},
            ":next": {"N": str(version + 1)},
            ":v": {"N": str(version)},
        }
        # LWA does not rotate refresh tokens today; if it ever does, keep the one it handed out.
        if grant.refresh_token and grant.refresh_token != refresh_token:
            update += ", #rt = :rt"
            names["#rt"] = _ATTR_REFRESH
            values[":rt"] = {"B": self._encrypt(serial, grant.refresh_token)}
        try:
            self._dynamodb.update_item(
                TableName=self._table_name,
                Key={"serial": {"S": serial}},
                UpdateExpression=update,
                ConditionExpression="#v = :v",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                # The item that beat us comes back with the failure: no second read.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return self._settle_race(serial, err.response.get("Item"), grant.access_token)
        logger.info("access token refreshed", extra={"serial": serial, "tokenEvent": "refreshed"})
        return grant.access_token

    def _settle_race(self, serial: str, current: dict[str, Any] | None, own_token: str) -> str:
        """Another writer changed the item between our read and write: prefer what it stored."""
        if current is None:
            # Destroyed meanwhile (unlinked): the device has no tokens any more.
            logger.info("tokens destroyed during refresh", extra={"serial": serial, "tokenEvent": "raced"})
            raise TokensMissing(f"no tokens stored for device {serial}")
        if self._is_fresh(current):
            logger.info(
                "access token refreshed concurrently; using the stored one",
                extra={"serial": serial, "tokenEvent": "raced"},
            )
            return self._decrypt(serial, current[_ATTR_ACCESS]["B"])
        logger.info(
            "access token refreshed concurrently; keeping our own",
            extra={"serial": serial, "tokenEvent": "raced"},
        )
        return own_token

    def _read(self, serial: str) -> dict[str, Any] | None:
        # Consistent read: a stale item right after a re-link would carry the revoked refresh token.
        answer = self._dynamodb.get_item(
            TableName=self._table_name, Key={"serial": {"S": serial}}, ConsistentRead=True
        )
        return answer.get("Item")

    def _is_fresh(self, item: dict[str, Any]) -> bool:
        if _ATTR_ACCESS not in item or _ATTR_EXPIRES not in item:
            return False
        now = self._clock.now().timestamp()
        return int(item[_ATTR_EXPIRES]["N"]) - now > REFRESH_MARGIN.total_seconds()

    def _expires_at(self, expires_in: int) -> int:
        return int(self._clock.now().timestamp()) + int(expires_in)

    def _encrypt(self, serial: str, plaintext: str) -> bytes:
        answer = self._kms.encrypt(
            KeyId=self._kms_key_id,
            Plaintext=plaintext.encode("utf-8"),
            EncryptionContext={"serial": serial},
        )
        return answer["CiphertextBlob"]

    def _decrypt(self, serial: str, ciphertext: bytes) -> str:
        try:
            answer = self._kms.decrypt(
                KeyId=self._kms_key_id,
                CiphertextBlob=ciphertext,
                EncryptionContext={"serial": serial},
            )
        except ClientError:
            # Wrong context (ciphertext moved between items), wrong key, or KMS refusal.
            logger.error("token ciphertext rejected by KMS", extra={"serial": serial})
            raise
        return answer["Plaintext"].decode("utf-8")

    # --- a linking's tokens between its code exchange and its completion ------------------------------

    def hold_pending_link(self, serial: str, grant: TokenGrantLike, *, owner_id: str, code: str) -> None:
        """Keep the tokens ``code`` was just exchanged for, until the linking completes.

        The code is spent once LWA has exchanged it: if the linking then fails (DRS slow, the function
        out of time), the app's retry with the same code finds these tokens instead of a refused code.
        Only the same customer presenting the same code gets them back (``pending_link``).
        """
        self._dynamodb.update_item(
            TableName=self._table_name,
            Key={schema.TOKENS_PK: {"S": _PENDING_LINK_PREFIX + serial}},
            UpdateExpression="SET #o = :o, #c = :c, #rt = :rt, #at = :at, #exp = :exp, #ttl = :ttl",
            ExpressionAttributeNames={
                "#o": _ATTR_OWNER,
                "#c": _ATTR_CODE_DIGEST,
                "#rt": _ATTR_REFRESH,
                "#at": _ATTR_ACCESS,
                "#exp": _ATTR_EXPIRES,
                "#ttl": _ATTR_TTL,
            },
            ExpressionAttributeValues={
                ":o": {"S": owner_id},
                ":c": {"S": _code_digest(code)},
                ":rt": {"B": self._encrypt(serial, grant.refresh_token)},
                ":at": {"B": self._encrypt(serial, grant.access_token)},
                ":exp": {"N": str(self._expires_at(grant.expires_in))},
                ":ttl": {"N": str(int((self._clock.now() + PENDING_LINK_LIFETIME).timestamp()))},
            },
        )
        logger.info(
            "link tokens held until the link completes", extra={"serial": serial, "tokenEvent": "held"}
        )

    def pending_link(self, serial: str, *, owner_id: str, code: str) -> HeldGrant | None:
        """The tokens a previous attempt of this linking (same customer, same code) exchanged and kept,
        with a fresh access token; None when there are none (or they expired, or LWA revoked them)."""
        answer = self._dynamodb.get_item(
            TableName=self._table_name,
            Key={schema.TOKENS_PK: {"S": _PENDING_LINK_PREFIX + serial}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        if (
            item is None
            or item[_ATTR_OWNER]["S"] != owner_id
            or item[_ATTR_CODE_DIGEST]["S"] != _code_digest(code)
            or int(item[_ATTR_TTL]["N"]) <= self._clock.now().timestamp()
        ):
            return None
        refresh_token = self._decrypt(serial, item[_ATTR_REFRESH]["B"])
        if self._is_fresh(item):
            expires_in = int(item[_ATTR_EXPIRES]["N"]) - int(self._clock.now().timestamp())
            return HeldGrant(self._decrypt(serial, item[_ATTR_ACCESS]["B"]), refresh_token, expires_in)
        try:
            grant = self._refresher.refresh(refresh_token)
        except LwaInvalidGrant:
            logger.info("held link tokens were revoked", extra={"serial": serial, "tokenEvent": "revoked"})
            return None
        return HeldGrant(grant.access_token, grant.refresh_token or refresh_token, grant.expires_in)

    def release_pending_link(self, serial: str) -> None:
        """Forget the held tokens once the linking has stored them as the device's own."""
        self._dynamodb.delete_item(
            TableName=self._table_name, Key={schema.TOKENS_PK: {"S": _PENDING_LINK_PREFIX + serial}}
        )


def _code_digest(code: str) -> str:
    # The code itself is never stored; its digest only recognises the same request again.
    return hashlib.sha256(code.encode("utf-8")).hexdigest()
