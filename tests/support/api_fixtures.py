"""Fixtures for the HTTP API's handler tests: moto, the simulator on loopback sharing the test clock, the
companion functions wired behind their authorizers as API Gateway wires them, and a linking helper.

Test modules bind the fixtures they use by assignment (``companion = api_fixtures.companion``).
"""

from __future__ import annotations

import importlib
import itertools
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from drs_core import dependencies
from drs_core.adapters.device_registry import DeviceRegistry
from drs_core.clock import ManualClock, default_clock
from drs_core.domain.pairing import hash_pairing_code, new_pairing_code
from sandbox.simulator import SimulatorServer
from sandbox.simulator.control import SimulatorControl, s256_challenge
from tests.conftest import SIM_CLIENT_ID, SIM_CLIENT_SECRET, AwsEnv, LambdaContext
from tests.support.gateway import Answer, Gateway

MODEL_ID = "WaterFilterPro"
SLOTS: dict[str, dict[str, Any]] = {
    "Filter": {"asin": "B00FILTER1", "quantity": 2, "unit": "count"},
    "Cleaner": {"asin": "B00CLEAN01", "quantity": 1.5, "unit": "liter"},
}
REDIRECT_URI = "https://localhost/callback"
REGISTRATION = "/v1/devices/{serial}/registration"
DEVICES = "/v1/devices"
DEVICE = "/v1/devices/{serial}"
SETTINGS_LINK = "/v1/devices/{serial}/settings-link"
POLICY = "/v1/devices/{serial}/slots/{slotId}/policy"
TEST_ORDERS = "/v1/devices/{serial}/test-orders"
SLOT_TEST_ORDER = "/v1/devices/{serial}/test-orders/{slotId}"
OPENAPI = "/v1/openapi.json"
USAGE = "/v1/devices/{serial}/usage"
# Every companion route of docs/api.md §1 with a concrete path builder.
COMPANION_ROUTES: list[tuple[str, str]] = [
    ("POST", REGISTRATION),
    ("DELETE", REGISTRATION),
    ("GET", DEVICES),
    ("GET", DEVICE),
    ("GET", SETTINGS_LINK),
    ("PUT", POLICY),
    ("DELETE", TEST_ORDERS),
    ("DELETE", SLOT_TEST_ORDER),
]

_serials = itertools.count(1)


def new_serial() -> str:
    return f"SN{next(_serials):05d}{secrets.token_hex(2).upper()}"


def concrete(template: str, serial: str, slot_id: str = "Filter") -> str:
    return template.replace("{serial}", serial).replace("{slotId}", slot_id)


@dataclass
class Functions:
    """The three handler modules, imported after the environment is in place."""

    companion_api: ModuleType
    companion_authorizer: ModuleType
    device_authorizer: ModuleType


@dataclass
class Customer:
    customer_id: str
    app_token: str = field(repr=False)

    @property
    def bearer(self) -> str:
        return f"Bearer {self.app_token}"


@dataclass
class Linked:
    serial: str
    owner: Customer
    answer: Answer

    @property
    def device_token(self) -> str:
        return str(self.answer.body["deviceToken"])


class Api:
    """The gateway plus the simulator's control client: what a test drives."""

    def __init__(
        self,
        gateway: Gateway,
        sim: SimulatorControl,
        server: SimulatorServer,
        fns: Functions,
        registry: DeviceRegistry,
    ) -> None:
        self.gateway = gateway
        self.sim = sim
        self.server = server
        self.functions = fns
        self.registry = registry
        # Pairing codes of the devices provisioned here, by serial (a re-link needs the same one).
        self.pairing_codes: dict[str, str] = {}

    def provision(self, serial: str, model_id: str = MODEL_ID) -> str:
        """The device leaves the factory: registered with a fresh pairing code, which is returned."""
        code = new_pairing_code()
        assert self.registry.provision(serial, model_id, hash_pairing_code(code), default_clock().now())
        self.pairing_codes[serial] = code
        return code

    def pairing_code(self, serial: str) -> str:
        """The device's pairing code, as the app reads it off the device: provisioned on first use."""
        return self.pairing_codes.get(serial) or self.provision(serial)

    def request(self, method: str, template: str, path: str | None = None, **options: Any) -> Answer:
        return self.gateway.request(method, template, path, **options)

    def customer(self) -> Customer:
        created = self.sim.create_customer()
        return Customer(created["customerId"], created["appAccessToken"])

    def consent(
        self,
        customer: Customer,
        serial: str,
        *,
        is_test_device: bool = True,
        verifier: str | None = None,
        slots: dict[str, dict[str, Any]] | None = None,
    ) -> str:
        """The customer's consent in the browser → the authorisation code for the app."""
        code, _ = self.sim.authorize(
            customer.customer_id,
            model_id=MODEL_ID,
            serial=serial,
            slots=SLOTS if slots is None else slots,
            is_test_device=is_test_device,
            code_challenge=s256_challenge(verifier) if verifier else None,
        )
        return code

    def register(
        self,
        customer: Customer,
        serial: str,
        code: str,
        *,
        verifier: str | None = None,
        is_test_device: bool = True,
        authorization: str | None = None,
        pairing_code: str | None = None,
    ) -> Answer:
        """``POST …/registration`` with ``pairing_code`` (default: the device's own, see ``pairing_code``;
        ``""``: none sent)."""
        body: dict[str, Any] = {
            "modelId": MODEL_ID,
            "pairingCode": self.pairing_code(serial) if pairing_code is None else pairing_code,
            "authorizationCode": code,
            "redirectUri": REDIRECT_URI,
            "isTestDevice": is_test_device,
        }
        if verifier is not None:
            body["codeVerifier"] = verifier
        if not body["pairingCode"]:
            del body["pairingCode"]
        return self.request(
            "POST",
            REGISTRATION,
            concrete(REGISTRATION, serial),
            authorization=authorization or customer.bearer,
            body=body,
        )

    def link(
        self,
        customer: Customer | None = None,
        serial: str | None = None,
        *,
        pkce: bool = False,
        is_test_device: bool = True,
    ) -> Linked:
        """Consent and register in one go; asserts the 201."""
        owner = customer or self.customer()
        device_serial = serial or new_serial()
        verifier = secrets.token_urlsafe(48) if pkce else None
        code = self.consent(owner, device_serial, is_test_device=is_test_device, verifier=verifier)
        answer = self.register(owner, device_serial, code, verifier=verifier, is_test_device=is_test_device)
        assert answer.status == 201, answer.body
        return Linked(device_serial, owner, answer)

    def device_authorizer(self, serial: str, authorization: str | None, template: str = USAGE) -> dict:
        """The device authorizer's answer for a request to ``template`` of ``serial``."""
        from tests.support.http_events import authorizer_event

        event = authorizer_event("POST", template, concrete(template, serial), authorization=authorization)
        return self.functions.device_authorizer.handler(event, LambdaContext())


def _import_fresh(name: str) -> ModuleType:
    module = sys.modules.get(name)
    return importlib.reload(module) if module is not None else importlib.import_module(name)


@pytest.fixture
def simulator(clock: ManualClock) -> Iterator[tuple[SimulatorServer, SimulatorControl]]:
    """The DRS + LWA simulator on an ephemeral loopback port, on the test's clock."""
    with SimulatorServer(
        host="127.0.0.1", port=0, client_id=SIM_CLIENT_ID, client_secret=SIM_CLIENT_SECRET, clock=clock
    ) as server:
        yield server, SimulatorControl(server.url, timeout=5.0)


@pytest.fixture
def api(
    aws: AwsEnv,
    simulator: tuple[SimulatorServer, SimulatorControl],
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: LambdaContext,
) -> Api:
    """The companion functions behind their authorizers, talking to moto and the simulator."""
    server, control = simulator
    for name, value in {
        "DRS_ENDPOINT": server.url,
        "LWA_ENDPOINT": server.url,
        "DRS_WEB_ENDPOINT": server.url,
        "HTTP_READ_TIMEOUT": "2",
        "HTTP_MAX_ATTEMPTS": "2",
        "HTTP_MAX_TOTAL_SECONDS": "3",
        "SETTINGS_EXIT_SCHEMES": "myapp",
    }.items():
        monkeypatch.setenv(name, value)
    dependencies.reset()
    fns = Functions(
        companion_api=_import_fresh("functions.companion_api.handler"),
        companion_authorizer=_import_fresh("functions.companion_authorizer.handler"),
        device_authorizer=_import_fresh("functions.device_authorizer.handler"),
    )
    gateway = Gateway(lambda_context)
    for method, template in COMPANION_ROUTES:
        gateway.route(method, template, fns.companion_api.handler, fns.companion_authorizer.handler)
    gateway.route("GET", OPENAPI, fns.companion_api.handler, None)
    return Api(gateway, control, server, fns, DeviceRegistry(aws.state_table, dynamodb=aws.dynamodb))
