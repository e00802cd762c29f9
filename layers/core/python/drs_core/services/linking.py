"""Linking a device to the customer's Amazon account, unlinking it, and the DRS settings page link.

Link (docs/architecture.md §1.1): refuse early if another customer holds the serial, exchange the LWA code
(web with the client secret, or PKCE), read ``subscriptionInfo`` v2 with the new access token, then
record the owner and a fresh device credential in one conditional write, store the tokens (KMS) and
the slots. Nothing is written before the code exchange and the subscription read have succeeded, so a
refused code leaves no trace. The credential is returned once; only its digest is stored.

Revocation at once: every link has a fresh link id, on the device item and on every slot item (stamped
in the same transaction as the link; unlinking and Amazon's deregistration remove it from all of them
in one transaction). The device authorizer hands the link id of the credential it checked to the usage
function, whose one conditional write per reading requires the slot's to match. API Gateway may keep
answering "allow" for an old credential from its cache for ``authorizerCacheSeconds``; the write refuses
it from the moment the link ends, without a read on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from drs_core.adapters.drs_client import DrsClient
from drs_core.adapters.lwa_client import LwaClient
from drs_core.adapters.state_repository import StateRepository
from drs_core.adapters.token_vault import TokenVault
from drs_core.clock import default_clock
from drs_core.domain.credentials import credential_digest, new_device_credential, new_link_id
from drs_core.domain.models import Device, DeviceStatus, Slot
from drs_core.errors import (
    DeviceAlreadyLinked,
    InvalidAuthorizationCode,
    InvalidExitUri,
    LwaInvalidGrant,
    ReauthRequired,
    TokensMissing,
)
from drs_core.observability import logger, metrics
from drs_core.services.devices import owned_device
from drs_core.services.drs_calls import call_drs, mark_reauth_required

# RFC 3986 §3.1: a scheme starts with a letter, then letters, digits, "+", "-", ".".
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+-.")


@dataclass(frozen=True)
class LinkRequest:
    """What the companion app sends to link ``serial``. The code and verifier stay out of reprs."""

    serial: str
    model_id: str
    authorization_code: str = field(repr=False)
    redirect_uri: str
    code_verifier: str | None = field(default=None, repr=False)
    is_test_device: bool = False


@dataclass(frozen=True)
class LinkResult:
    """The linked device, its slots and the device credential (shown to the app once)."""

    device: Device
    slots: list[Slot]
    device_token: str = field(repr=False)


def link_device(
    request: LinkRequest,
    *,
    owner_id: str,
    lwa: LwaClient,
    drs: DrsClient,
    vault: TokenVault,
    repository: StateRepository,
) -> LinkResult:
    """Link (or re-link) ``request.serial`` to ``owner_id``; rotate its credential and tokens.

    Raises ``DeviceAlreadyLinked`` when another customer holds the serial, ``InvalidAuthorizationCode``
    when LWA refuses the code (nothing stored in either case).
    """
    serial = request.serial
    existing = repository.get_device(serial, consistent=True)
    # Checked before the code is spent: exchanging it would replace the other customer's registration.
    if _held_by_someone_else(existing, owner_id):
        raise DeviceAlreadyLinked(f"device {serial} is linked to another account")

    try:
        grant = lwa.exchange_code(request.authorization_code, request.redirect_uri, request.code_verifier)
    except LwaInvalidGrant as refused:
        metrics.add_metric(name="LinkCodeRejected", unit="Count", value=1)
        raise InvalidAuthorizationCode("Login with Amazon rejected the authorization code") from refused
    subscription = drs.subscription_info(grant.access_token, version=2)

    now = default_clock().now()
    credential = new_device_credential()
    link_id = new_link_id()
    device = repository.link_device(
        Device(
            serial=serial,
            model_id=request.model_id,
            status=DeviceStatus.LINKED,
            is_test_device=request.is_test_device,
            last_active_at=existing.last_active_at if existing else None,
            credential_hash=credential_digest(credential),
            linked_at=now,
            link_id=link_id,
        ),
        owner_id=owner_id,
    )
    vault.store(serial, grant)
    for slot_id, state in sorted(subscription.slots.items()):
        product = state.products[0] if state.products else None
        repository.upsert_subscription(
            serial,
            slot_id,
            subscribed=state.subscribed,
            asin=product.asin if product else None,
            quantity=float(product.quantity) if product else None,
            unit=product.unit if product else None,
            link_id=link_id,
        )
    found = repository.get_device_with_slots(serial, consistent=True)
    slots = found[1] if found else []
    relinked = existing is not None and existing.owner_id == owner_id
    logger.info(
        "device linked", extra={"serial": serial, "relinked": relinked, "slotCount": len(subscription.slots)}
    )
    metrics.add_metric(name="DeviceLinked", unit="Count", value=1)
    return LinkResult(device=device, slots=slots, device_token=credential)


def _held_by_someone_else(device: Device | None, owner_id: str) -> bool:
    return (
        device is not None
        and device.owner_id is not None
        and device.owner_id != owner_id
        and device.status is not DeviceStatus.DEREGISTERED
    )


def unlink_device(
    serial: str, *, owner_id: str, drs: DrsClient, vault: TokenVault, repository: StateRepository
) -> Device:
    """Deregister the device at DRS, destroy its tokens, mark it ``DEREGISTERED``.

    When DRS has already revoked the tokens (or none are stored), there is nothing left to deregister
    remotely: the local part still completes, so the app can always remove a device.
    """
    device = owned_device(serial, owner_id, repository, consistent=True)
    if device.status is not DeviceStatus.DEREGISTERED:
        try:
            call_drs(serial, drs.deregister, vault=vault, repository=repository)
        except (ReauthRequired, TokensMissing) as gone:
            logger.info(
                "DRS registration already gone; finishing locally",
                extra={"serial": serial, "reason": type(gone).__name__},
            )
    vault.destroy(serial)
    # Device and slots in one transaction: the device credential stops working at once.
    updated = repository.unlink_device(serial) or device
    logger.info("device unlinked", extra={"serial": serial})
    metrics.add_metric(name="DeviceUnlinked", unit="Count", value=1)
    return updated


def settings_link(
    serial: str,
    exit_uri: str,
    *,
    owner_id: str,
    web_endpoint: str,
    vault: TokenVault,
    repository: StateRepository,
) -> str:
    """The drs-web settings page URL for the device, with a freshly refreshed access token.

    A refreshed token gives the customer the token's whole hour on the page. The URL carries the
    token: callers must not log it.
    """
    if not has_scheme(exit_uri):
        raise InvalidExitUri("exitUri must be an absolute URI with a scheme, e.g. myapp://settings-done")
    owned_device(serial, owner_id, repository)
    try:
        access_token = vault.access_token(serial, force_refresh=True)
    except ReauthRequired:
        mark_reauth_required(serial, repository)
        raise
    query = urlencode({"access_token": access_token, "exitUri": exit_uri})
    return f"{web_endpoint.rstrip('/')}/settings?{query}"


def has_scheme(uri: str) -> bool:
    """True when ``uri`` starts with an RFC 3986 scheme followed by ":" (``https:``, ``myapp:``)."""
    scheme = urlsplit(uri).scheme
    return bool(scheme) and scheme[0].isalpha() and set(scheme.lower()) <= _SCHEME_CHARS
