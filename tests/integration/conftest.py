"""Fixtures for the DRS and LWA clients against the DRS + LWA simulator over real loopback HTTP.

Each test gets its own simulator (fresh state, fresh call log, no faults left over); it starts in a few
milliseconds. The clients use a session with tiny backoffs so retry tests stay fast.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import requests

from drs_core.adapters.drs_client import DrsClient
from drs_core.adapters.http import Timeouts, build_session
from drs_core.adapters.lwa_client import LwaClient, TokenGrant

if TYPE_CHECKING:
    from sandbox.simulator import SimulatorServer

CLIENT_ID = "amzn1.application-oa2-client.sandbox"
CLIENT_SECRET = "sandbox-secret"
MODEL_ID = "WaterFilterPro"
DEFAULT_SLOTS: dict[str, dict[str, Any]] = {
    "Filter": {"asin": "B00FILTER1", "quantity": 2, "unit": "count"},
    "Cleaner": {"asin": "B00CLEAN01", "quantity": 1.5, "unit": "liter"},
}
# Small enough that a test with several retries stays well under a second.
FAST_TIMEOUTS = Timeouts(connect=1.0, read=2.0)

_serials = itertools.count(1)


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


def s256_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636: base64url of SHA-256, no padding)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class SimControl:
    """The simulator's ``/__sim/`` control routes (api.md §3), through a plain session without retries."""

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self.url: str = server.url.rstrip("/")
        self._http = requests.Session()

    def _request(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> dict[str, Any]:
        response = self._http.request(method, self.url + path, timeout=5, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def create_customer(self, *, order_issue: bool = False) -> str:
        body: dict[str, Any] = {"name": "Test Customer"}
        if order_issue:
            body["orderIssue"] = True
        return str(self._request("POST", "/__sim/customers", expect=201, json=body)["customerId"])

    def authorize(
        self,
        customer_id: str,
        serial: str,
        slots: dict[str, dict[str, Any]],
        *,
        model_id: str = MODEL_ID,
        is_test_device: bool = True,
        code_challenge: str | None = None,
    ) -> tuple[str, str]:
        """The customer's consent → (authorization code, redirect URI)."""
        body: dict[str, Any] = {
            "customerId": customer_id,
            "modelId": model_id,
            "serial": serial,
            "slots": slots,
            "isTestDevice": is_test_device,
        }
        if code_challenge is not None:
            body["pkce"] = {"codeChallenge": code_challenge}
        answer = self._request("POST", "/__sim/authorize", json=body)
        return str(answer["authorizationCode"]), str(answer["redirectUri"])

    def set_subscription(self, serial: str, slots: dict[str, dict[str, Any] | None]) -> None:
        self._request("PUT", f"/__sim/devices/{serial}/subscription", json={"slots": slots})

    def advance_clock(self, seconds: float) -> str:
        return str(self._request("POST", "/__sim/clock", json={"advanceSeconds": seconds})["now"])

    def set_fault(
        self,
        endpoint: str | None,
        rate: float,
        *,
        status: int | None = None,
        latency_ms: float | None = None,
        seed: int | None = None,
    ) -> None:
        body: dict[str, Any] = {"rate": rate}
        for key, value in (
            ("endpoint", endpoint),
            ("status", status),
            ("latencyMs", latency_ms),
            ("seed", seed),
        ):
            if value is not None:
                body[key] = value
        self._request("POST", "/__sim/faults", json=body)

    def calls(self, operation: str | None = None) -> list[dict[str, Any]]:
        """Every DRS/LWA call the simulator recorded (optionally of one operation), in order."""
        recorded = self._request("GET", "/__sim/calls")["calls"]
        return [c for c in recorded if operation is None or c["operation"] == operation]

    def order_action(self, instance_id: str, action: str, expect: int = 200) -> dict[str, Any]:
        return self._request("POST", f"/__sim/orders/{instance_id}/{action}", expect=expect)


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


@pytest.fixture
def sim() -> Iterator[SimControl]:
    """A fresh simulator on an ephemeral loopback port."""
    # Imported here so the other integration tests sharing this conftest do not depend on the simulator.
    from sandbox.simulator import SimulatorServer

    with SimulatorServer(
        host="127.0.0.1", port=0, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as server:
        yield SimControl(server)


@pytest.fixture
def lwa(sim: SimControl) -> LwaClient:
    return LwaClient(sim.url, CLIENT_ID, CLIENT_SECRET, session=fast_session(), timeouts=FAST_TIMEOUTS)


@pytest.fixture
def drs(sim: SimControl) -> DrsClient:
    return DrsClient(sim.url, session=fast_session(), timeouts=FAST_TIMEOUTS)


@pytest.fixture
def link_device(sim: SimControl, lwa: LwaClient) -> Callable[..., LinkedDevice]:
    """Create a customer, authorise a device with slots, exchange the code with our LwaClient."""

    def link(
        *,
        slots: dict[str, dict[str, Any]] | None = None,
        is_test_device: bool = True,
        order_issue: bool = False,
        customer_id: str | None = None,
        serial: str | None = None,
    ) -> LinkedDevice:
        chosen_slots = DEFAULT_SLOTS if slots is None else slots
        customer = customer_id or sim.create_customer(order_issue=order_issue)
        device_serial = serial or f"SN{next(_serials):06d}"
        code, redirect_uri = sim.authorize(
            customer, device_serial, chosen_slots, is_test_device=is_test_device
        )
        grant = lwa.exchange_code(code, redirect_uri)
        return LinkedDevice(
            serial=device_serial,
            model_id=MODEL_ID,
            customer_id=customer,
            slots=chosen_slots,
            grant=grant,
            code=code,
        )

    return link
