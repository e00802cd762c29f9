"""Linking a device to the customer's Amazon account, unlinking it, and the DRS settings page link.

Link (docs/architecture.md §1.1): refuse early if another customer holds the serial, exchange the LWA code
(web with the client secret, or PKCE), read ``subscriptionInfo`` v2 with the new access token, then
record the owner and a fresh device credential in one conditional write, store the tokens (KMS) and
the slots. Nothing is written before the code exchange has succeeded, so a refused code leaves no
trace; the device is written only after the subscription read has succeeded too. Between the two, the
exchanged tokens are held (``TokenVault.hold_pending_link``): the code is spent, and a retry with it
completes the link from the held tokens. The credential is returned once; only its digest is stored.

Revocation at once: every link has a fresh link id, on the device item and on every slot item (stamped
in the same transaction as the link; unlinking and Amazon's deregistration remove it from all of them
in one transaction). The device authorizer hands the link id of the credential it checked to the usage
function, whose one conditional write per reading requires the slot's to match. API Gateway may keep
answering "allow" for an old credential from its cache for ``authorizerCacheSeconds``; the write refuses
it from the moment the link ends, without a read on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from drs_core.adapters.device_registry import DeviceRegistry
from drs_core.adapters.drs_client import DrsClient
from drs_core.adapters.lwa_client import LwaClient
from drs_core.adapters.state_repository import StateRepository
from drs_core.adapters.token_vault import TokenGrantLike, TokenVault
from drs_core.catalog import slot_spec
from drs_core.clock import default_clock
from drs_core.domain.credentials import credential_digest, new_device_credential, new_link_id
from drs_core.domain.models import Device, DeviceStatus, Slot
from drs_core.domain.pairing import pairing_code_matches
from drs_core.errors import (
    DeviceAlreadyLinked,
    InvalidAuthorizationCode,
    InvalidExitUri,
    LwaInvalidGrant,
    LwaInvalidRequest,
    ModelMismatch,
    PairingCodeRejected,
    PairingLocked,
    ReauthRequired,
    TokensMissing,
)
from drs_core.observability import logger, metrics
from drs_core.services.devices import owned_device
from drs_core.services.drs_calls import call_drs, mark_reauth_required

# RFC 3986 §3.1: a scheme starts with a letter, then letters, digits, "+", "-", ".".
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+-.")
# Schemes no configuration may allow as the settings page's exit.
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_NEVER_EXIT_SCHEMES = frozenset({"http", "javascript", "data", "vbscript", "file", "blob", "about"})


@dataclass(frozen=True)
class LinkRequest:
    """What the companion app sends to link ``serial``. Codes and verifier stay out of reprs.

    ``model_id`` may be left out when the registry knows the device (it is the registry's anyway).
    """

    serial: str
    model_id: str | None
    authorization_code: str = field(repr=False)
    redirect_uri: str
    code_verifier: str | None = field(default=None, repr=False)
    is_test_device: bool = False
    pairing_code: str | None = field(default=None, repr=False)


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
    registry: DeviceRegistry | None = None,
) -> LinkResult:
    """Link (or re-link) ``request.serial`` to ``owner_id``; rotate its credential and tokens.

    With a ``registry`` (the stage requires proof of possession) the serial must be a manufactured one
    and ``request.pairing_code`` its code: ``PairingCodeRejected`` otherwise (only the failed-attempt
    count is written), ``PairingLocked`` while the serial is locked; the model is the registry's.
    Raises ``DeviceAlreadyLinked`` when another customer holds the serial, ``InvalidAuthorizationCode``
    when LWA refuses the code (nothing stored in either case).
    """
    serial = request.serial
    model_id = request.model_id
    if registry is not None:
        model_id = prove_possession(serial, request.pairing_code, request.model_id, registry=registry)
    if not model_id:
        raise ModelMismatch("modelId is required")
    existing = repository.get_device(serial, consistent=True)
    # Checked before the code is spent: exchanging it would replace the other customer's registration.
    if _held_by_someone_else(existing, owner_id):
        raise DeviceAlreadyLinked(f"device {serial} is linked to another account")

    grant = _exchanged_or_held_grant(request, owner_id=owner_id, lwa=lwa, vault=vault)
    subscription = drs.subscription_info(grant.access_token, version=2)

    now = default_clock().now()
    credential = new_device_credential()
    link_id = new_link_id()
    device = repository.link_device(
        Device(
            serial=serial,
            model_id=model_id,
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
    vault.release_pending_link(serial)
    for slot_id, state in sorted(subscription.slots.items()):
        product = state.products[0] if state.products else None
        # The slot's unit and full quantity are the model catalog's; productInfo describes a pack.
        spec = slot_spec(model_id, slot_id)
        repository.upsert_subscription(
            serial,
            slot_id,
            subscribed=state.subscribed,
            asin=product.asin if product else None,
            quantity=spec.full_quantity if spec else None,
            unit=spec.unit if spec else None,
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


def _exchanged_or_held_grant(
    request: LinkRequest, *, owner_id: str, lwa: LwaClient, vault: TokenVault
) -> TokenGrantLike:
    """The tokens of this link: the ones an earlier attempt with the same code exchanged and kept, or
    those LWA exchanges the code for now, kept at once.

    The code is spent by the exchange. An attempt that fails after it (``subscriptionInfo`` slow or
    failing, the function out of time) leaves the tokens held, and the app's retry with the same code
    completes the link without a second exchange, which LWA would refuse.
    """
    held = vault.pending_link(request.serial, owner_id=owner_id, code=request.authorization_code)
    if held is not None:
        logger.info("resuming a link whose code was exchanged before", extra={"serial": request.serial})
        metrics.add_metric(name="LinkResumed", unit="Count", value=1)
        return held
    try:
        grant = lwa.exchange_code(request.authorization_code, request.redirect_uri, request.code_verifier)
    except (LwaInvalidGrant, LwaInvalidRequest) as refused:
        # invalid_grant: expired, used or unknown code; invalid_request: a malformed one. Both are the
        # app's input, so a 400, never a gateway fault.
        metrics.add_metric(name="LinkCodeRejected", unit="Count", value=1)
        raise InvalidAuthorizationCode("Login with Amazon rejected the authorization code") from refused
    vault.hold_pending_link(request.serial, grant, owner_id=owner_id, code=request.authorization_code)
    return grant


def prove_possession(
    serial: str, pairing_code: str | None, model_id: str | None, *, registry: DeviceRegistry
) -> str:
    """Check that the caller holds device ``serial`` (its pairing code); the registry's model id.

    An unknown serial and a wrong code answer alike. A wrong code counts against the serial; the
    attempt that reaches the limit locks it for a while (``device_registry.LOCK_PERIOD``). A model id
    other than the registry's is refused once possession is proven.
    """
    now = default_clock().now()
    device = registry.get(serial)
    if device is not None and device.locked_until is not None and device.locked_until > now:
        metrics.add_metric(name="PairingLocked", unit="Count", value=1)
        raise PairingLocked("too many wrong pairing codes for this device; try again later")
    if device is None or not pairing_code or not pairing_code_matches(pairing_code, device.code_hash):
        if device is not None:
            registry.record_failure(serial, now)
        logger.info("pairing refused", extra={"serial": serial, "known": device is not None})
        metrics.add_metric(name="PairingRejected", unit="Count", value=1)
        raise PairingCodeRejected("the device could not be verified: check the serial and pairing code")
    if device.failed_attempts or device.locked_until is not None:
        registry.clear_failures(serial)
    if model_id is not None and model_id != device.model_id:
        raise ModelMismatch(f"device {serial} is not a {model_id}")
    return device.model_id


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
    app_schemes: Iterable[str] = (),
    loopback: bool = False,
) -> str:
    """The drs-web settings page URL for the device, with a freshly refreshed access token.

    ``exit_uri`` (where the page sends the customer back) must be an https URL or use one of the
    companion app's own ``app_schemes`` (``exit_uri_allowed``). A refreshed token gives the customer the
    token's whole hour on the page. The URL carries the token: callers must not log it.
    """
    if not exit_uri_allowed(exit_uri, app_schemes, loopback=loopback):
        raise InvalidExitUri("exitUri must be an https URL or use the app's own scheme")
    owned_device(serial, owner_id, repository)
    try:
        access_token = vault.access_token(serial, force_refresh=True)
    except ReauthRequired:
        mark_reauth_required(serial, repository)
        raise
    query = urlencode({"access_token": access_token, "exitUri": exit_uri})
    return f"{web_endpoint.rstrip('/')}/settings?{query}"


def exit_uri_allowed(uri: str, app_schemes: Iterable[str] = (), *, loopback: bool = False) -> bool:
    """True for an https URL with a host, or a URI of one of ``app_schemes`` (the app's own, e.g.
    ``myapp``; configured per stage, context ``settingsExitSchemes``). Never ``javascript:``, ``data:``
    or plain http, whatever is configured: the page would send the customer there with Amazon's
    session open; plain http to this machine's loopback only with ``loopback`` (the sandbox's web
    app). No whitespace or control characters anywhere."""
    if not uri or any(ord(char) <= 0x20 or ord(char) == 0x7F for char in uri):
        return False
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "https":
        return bool(parts.hostname)
    if scheme == "http" and loopback:
        return parts.hostname in _LOOPBACK_HOSTS
    allowed = {s.lower() for s in app_schemes} - _NEVER_EXIT_SCHEMES
    return bool(scheme) and scheme in allowed and set(scheme) <= _SCHEME_CHARS
