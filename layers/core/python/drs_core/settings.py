"""Typed settings, read once from the environment.

A function declares which settings it cannot run without (``load_settings(required=...)``) at import
time, so a missing variable fails the cold start with a message naming it, not a request deep inside.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

# Environment variable → field name. One table, so docs, infra and code agree.
ENV_VARS: dict[str, str] = {
    "STAGE": "stage",
    "STATE_TABLE": "state_table",
    "TOKENS_TABLE": "tokens_table",
    "IDEMPOTENCY_TABLE": "idempotency_table",
    "TOKENS_KMS_KEY_ID": "tokens_kms_key_id",
    "DRS_ENDPOINT": "drs_endpoint",
    "LWA_ENDPOINT": "lwa_endpoint",
    "DRS_WEB_ENDPOINT": "drs_web_endpoint",
    "LWA_CLIENT_ID": "lwa_client_id",
    "LWA_CLIENT_SECRET_NAME": "lwa_client_secret_name",
    "HTTP_CONNECT_TIMEOUT": "http_connect_timeout",
    "HTTP_READ_TIMEOUT": "http_read_timeout",
    "HTTP_MAX_ATTEMPTS": "http_max_attempts",
    "HTTP_MAX_TOTAL_SECONDS": "http_max_total_seconds",
    "REPORT_QUEUE_URL": "report_queue_url",
    "REQUIRE_PAIRING_CODE": "require_pairing_code",
    "SETTINGS_EXIT_SCHEMES": "settings_exit_schemes",
    "SETTINGS_EXIT_LOOPBACK": "settings_exit_loopback",
}


class SettingsError(RuntimeError):
    pass


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _attempts(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10:
        raise ValueError("must be between 1 and 10")
    return value


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value == "true"


def _schemes(text: str) -> tuple[str, ...]:
    schemes = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not all(s[0].isalpha() and set(s) <= set("abcdefghijklmnopqrstuvwxyz0123456789+-.") for s in schemes):
        raise ValueError("must be comma-separated URI schemes")
    return schemes


# How a typed setting is read from its text; every other setting is a string. A plain dataclass, not a
# pydantic model: functions that parse no JSON body (authorizers, reorder, reporting) load no pydantic.
_CONVERTERS: dict[str, Callable[[str], object]] = {
    "http_connect_timeout": _positive,
    "http_read_timeout": _positive,
    "http_max_attempts": _attempts,
    "http_max_total_seconds": _positive,
    "require_pairing_code": _flag,
    "settings_exit_schemes": _schemes,
    "settings_exit_loopback": _flag,
}


@dataclass(frozen=True)
class Settings:
    stage: str = "dev"
    state_table: str | None = None
    tokens_table: str | None = None
    idempotency_table: str | None = None
    tokens_kms_key_id: str | None = None
    drs_endpoint: str = "https://dash-replenishment-service-na.amazon.com"
    lwa_endpoint: str = "https://api.amazon.com"
    drs_web_endpoint: str = "https://drs-web.amazon.com"
    lwa_client_id: str | None = None
    lwa_client_secret_name: str | None = None
    http_connect_timeout: float = 3.05
    http_read_timeout: float = 10.0
    http_max_attempts: int = 4
    http_max_total_seconds: float = 20.0
    report_queue_url: str | None = None
    # Linking must prove possession of the device with its pairing code (context ``requirePairingCode``).
    require_pairing_code: bool = True
    # Schemes besides https that the settings page may return to: the companion app's own (context
    # ``settingsExitSchemes``, comma-separated).
    settings_exit_schemes: tuple[str, ...] = ()
    # Plain http to this machine's loopback (127.0.0.1, ::1, localhost) as well: the sandbox's web app
    # only. No context sets it, so a deployed stage never allows it.
    settings_exit_loopback: bool = False


def load_settings(environ: Mapping[str, str] | None = None, required: Iterable[str] = ()) -> Settings:
    """Build ``Settings`` from environment variables; raise ``SettingsError`` naming what is missing or
    malformed."""
    env = os.environ if environ is None else environ
    missing = [name for name in required if not env.get(name)]
    if missing:
        raise SettingsError(f"missing required environment variable(s): {', '.join(sorted(missing))}")
    values: dict[str, object] = {}
    for name, field in ENV_VARS.items():
        text = env.get(name)
        if not text:
            continue
        try:
            values[field] = _CONVERTERS.get(field, str)(text)
        except ValueError as err:
            raise SettingsError(f"environment variable {name}={text!r}: {err}") from None
    return Settings(**values)  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings (cached; tests build their own with ``load_settings``)."""
    return load_settings()
