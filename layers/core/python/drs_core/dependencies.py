"""The adapters a function needs, built once per process from settings, lazily (cheap cold starts).

Handlers call these; tests and the sandbox call ``reset()`` after changing the environment, or pass
their own adapters to the services directly.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from drs_core.clock import default_clock
from drs_core.settings import Settings, SettingsError, settings

if TYPE_CHECKING:
    from drs_core.adapters.device_registry import DeviceRegistry
    from drs_core.adapters.drs_client import DrsClient
    from drs_core.adapters.lwa_client import LwaClient
    from drs_core.adapters.report_store import ReportStore
    from drs_core.adapters.state_repository import StateRepository
    from drs_core.adapters.token_vault import TokenVault
    from drs_core.adapters.usage_store import UsageStore

# How long the LWA client secret is cached after a Secrets Manager read (Powertools Parameters).
SECRET_MAX_AGE_SECONDS = 300


def _require(value: str | None, variable: str) -> str:
    if not value:
        raise SettingsError(f"missing required environment variable: {variable}")
    return value


@cache
def repository() -> StateRepository:
    from drs_core.adapters.state_repository import StateRepository

    return StateRepository(_require(settings().state_table, "STATE_TABLE"))


@cache
def device_registry() -> DeviceRegistry:
    """The registry of manufactured devices (pairing-code hashes), in the state table."""
    from drs_core.adapters.device_registry import DeviceRegistry

    return DeviceRegistry(_require(settings().state_table, "STATE_TABLE"))


@cache
def usage_store() -> UsageStore:
    """The usage path's slot writes (its own DynamoDB client, built on first use)."""
    from drs_core.adapters.usage_store import UsageStore

    return UsageStore(_require(settings().state_table, "STATE_TABLE"))


@cache
def report_store() -> ReportStore:
    """The per-device report marks (the reorder function's prompt refill reports mark them too)."""
    from drs_core.adapters.report_store import ReportStore

    return ReportStore(_require(settings().state_table, "STATE_TABLE"))


@cache
def http_session():
    from drs_core.adapters.http import build_session

    config: Settings = settings()
    return build_session(
        max_attempts=config.http_max_attempts, max_total_seconds=config.http_max_total_seconds
    )


def _timeouts():
    from drs_core.adapters.http import Timeouts

    config = settings()
    return Timeouts(connect=config.http_connect_timeout, read=config.http_read_timeout)


@cache
def drs_client() -> DrsClient:
    from drs_core.adapters.drs_client import DrsClient

    return DrsClient(settings().drs_endpoint, session=http_session(), timeouts=_timeouts())


def lwa_client_secret() -> str:
    """The LWA client secret from Secrets Manager, cached for ``SECRET_MAX_AGE_SECONDS``."""
    from aws_lambda_powertools.utilities import parameters

    name = _require(settings().lwa_client_secret_name, "LWA_CLIENT_SECRET_NAME")
    return str(parameters.get_secret(name, max_age=SECRET_MAX_AGE_SECONDS))


@cache
def lwa_client() -> LwaClient:
    from drs_core.adapters.lwa_client import LwaClient

    config = settings()
    return LwaClient(
        config.lwa_endpoint,
        _require(config.lwa_client_id, "LWA_CLIENT_ID"),
        lwa_client_secret,
        session=http_session(),
        timeouts=_timeouts(),
    )


@cache
def token_vault() -> TokenVault:
    from drs_core.adapters.token_vault import TokenVault

    config = settings()
    return TokenVault(
        _require(config.tokens_table, "TOKENS_TABLE"),
        _require(config.tokens_kms_key_id, "TOKENS_KMS_KEY_ID"),
        lwa_client(),
        default_clock(),
    )


def reset() -> None:
    """Forget every built adapter and the cached settings (tests, the sandbox)."""
    for factory in (
        repository,
        device_registry,
        usage_store,
        report_store,
        http_session,
        drs_client,
        lwa_client,
        token_vault,
        settings,
    ):
        factory.cache_clear()
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
