"""Constants and builders for tests that drive the DRS and LWA clients against the simulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from drs_core.adapters.http import Timeouts, build_session
from drs_core.adapters.lwa_client import TokenGrant

CLIENT_ID = "amzn1.application-oa2-client.sandbox"
CLIENT_SECRET = "sandbox-secret"
MODEL_ID = "WaterFilterPro"
DEFAULT_SLOTS: dict[str, dict[str, Any]] = {
    "Filter": {"asin": "B00FILTER1", "quantity": 2, "unit": "count"},
    "Cleaner": {"asin": "B00CLEAN01", "quantity": 1.5, "unit": "liter"},
}
# Small enough that a test with several retries stays well under a second.
FAST_TIMEOUTS = Timeouts(connect=1.0, read=2.0)


def fast_session(**overrides: Any) -> requests.Session:
    """A client session with the production retry rules but millisecond backoffs."""
    options: dict[str, Any] = {
        "max_attempts": 4,
        "max_total_seconds": 5.0,
        "backoff_factor": 0.005,
        "backoff_max": 0.02,
        "backoff_jitter": 0.005,
    }
    options.update(overrides)
    return build_session(**options)


@dataclass
class LinkedDevice:
    """A device the customer linked, with the tokens our LwaClient obtained for it."""

    serial: str
    model_id: str
    customer_id: str
    slots: dict[str, dict[str, Any]]
    grant: TokenGrant
    code: str = field(repr=False)

    @property
    def token(self) -> str:
        return self.grant.access_token
