"""Calling DRS on behalf of a device: the access token from the vault, one retry with a fresh token.

DRS answers 400 for a bad or expired token. The vault's cached token may have been revoked or expired
early, so a rejected call is retried once with a forced refresh; a second rejection, or a refresh that
LWA refuses (``invalid_grant``), means the customer must link the device again: the device turns
``REAUTH_REQUIRED`` (visible to the app) and ``ReauthRequired`` is raised, never retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from drs_core.adapters.state_repository import StateRepository
from drs_core.adapters.token_vault import TokenVault
from drs_core.domain.models import DeviceStatus
from drs_core.errors import DrsTokenRejected, ReauthRequired
from drs_core.observability import logger, metrics

T = TypeVar("T")


def call_drs(serial: str, call: Callable[[str], T], *, vault: TokenVault, repository: StateRepository) -> T:
    """Run ``call(access_token)`` for ``serial``; on a rejected token refresh once, then give up."""
    try:
        try:
            return call(vault.access_token(serial))
        except DrsTokenRejected:
            logger.info("DRS rejected the cached access token; refreshing", extra={"serial": serial})
            try:
                return call(vault.access_token(serial, force_refresh=True))
            except DrsTokenRejected as rejected:
                raise ReauthRequired(f"DRS rejects the tokens of device {serial}") from rejected
    except ReauthRequired:
        mark_reauth_required(serial, repository)
        raise


def mark_reauth_required(serial: str, repository: StateRepository) -> None:
    """Flag the device for re-linking (only a LINKED device moves; a deregistered one stays)."""
    if repository.set_device_status(serial, DeviceStatus.REAUTH_REQUIRED, expected={DeviceStatus.LINKED}):
        logger.warning("device needs re-authorisation", extra={"serial": serial})
        metrics.add_metric(name="ReauthRequired", unit="Count", value=1)
