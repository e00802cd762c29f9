"""An outside fuzzer against the served contract (issue 16 §5): schemathesis reads ``GET
/v1/openapi.json`` from the local gateway and sends what the document allows, and what it forbids,
to every operation, with a companion token and a device token, through the real authorizers.

Two runs:
1. Per operation, valid (positive) and invalid (negative) requests, once with generated path
   parameters and once aimed at a linked device of ours (the destructive unlink last).
2. Stateful: schemathesis follows the document's links from the device list to the device, its
   policy, settings link, test orders and usage reports.

For every answer: no 5xx; the status documented for the operation; the body in the documented shape
(schemathesis' ``status_code_conformance``, ``content_type_conformance``,
``response_schema_conformance``); and a rejected request stored nothing (every table, the registry's
failed-attempt count aside). A short run in the suite; ``--full`` runs it at size.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sandbox.scenario import LinkedDevice, SandboxClient, remaining
from sandbox.system import EmbeddedSystem
from tests.hardening.conftest import MODEL_ID, SLOTS, table_snapshot

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SHORT_EXAMPLES, FULL_EXAMPLES = 3, 60
SHORT_STEPS, FULL_STEPS = (3, 6), (40, 12)  # (scenarios, steps per scenario)
_COUNTERS = ("failedPairingAttempts", "pairingLockedUntil")
# Run last: it unlinks the device the other runs aim at.
_LAST = ("delete", "/v1/devices/{serial}/registration")


@pytest.fixture(scope="module")
def device(system: EmbeddedSystem, client: SandboxClient) -> LinkedDevice:
    customer = client.create_customer("schemathesis owner")
    linked = client.link_device(customer, MODEL_ID, "FUZZST001", SLOTS, is_test=True)
    client.post_usage(linked, [remaining("Filter", 90.0, system.clock.now())])
    return linked


@pytest.fixture(scope="module")
def schema(system: EmbeddedSystem) -> Any:
    loaded = schemathesis.openapi.from_url(f"{system.gateway_url}/v1/openapi.json", timeout=30)
    loaded.config.base_url = system.gateway_url
    return loaded


def _stored(system: EmbeddedSystem) -> dict[str, list[dict[str, Any]]]:
    """Every table's items, the registry's failed-attempt count left out (a refused pairing counts)."""
    return {
        table: sorted(({k: v for k, v in item.items() if k not in _COUNTERS} for item in items), key=repr)
        for table, items in table_snapshot(system).items()
    }


class Tally:
    """What the fuzzer sent and got, and what went wrong, across a run."""

    def __init__(self, system: EmbeddedSystem) -> None:
        self.system = system
        self.statuses: Counter[int] = Counter()
        self.problems: list[str] = []
        self.stored = _stored(system)

    def check(self, case: Any, response: Any) -> None:
        """Validate one answer with schemathesis' checks and ours; note any failure."""
        self.statuses[response.status_code] += 1
        where = f"{case.method} {case.formatted_path} -> {response.status_code}"
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as failure:  # schemathesis' failure group: keep going, report them all
            self.problems.append(f"{where}: {str(failure)[:400]}")
        now = _stored(self.system)
        if response.status_code >= 400 and now != self.stored:
            self.problems.append(f"{where}: a rejected request changed what is stored")
        self.stored = now


def _headers(operation: Any, device: LinkedDevice) -> dict[str, str]:
    """The valid credential of the operation's security scheme."""
    schemes = {name for requirement in operation.definition.raw.get("security", []) for name in requirement}
    if "device" in schemes:
        return {"Authorization": f"Device {device.device_token}"}
    if "companion" in schemes:
        return {"Authorization": f"Bearer {device.customer.app_token}"}
    return {}


def test_every_operation_answers_as_documented(
    system: EmbeddedSystem, device: LinkedDevice, schema: Any, full_size: bool
) -> None:
    # Given every operation of the served document, the unlink last
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda op: ((op.method.lower(), op.path) == _LAST, op.method, op.path),
    )
    assert len(operations) == 9
    tally = Tally(system)
    examples = FULL_EXAMPLES if full_size else SHORT_EXAMPLES
    session = requests.Session()

    # When schemathesis sends valid and invalid requests to each, at random serials and at ours
    for operation in operations:
        headers = _headers(operation, device)
        ours = {"serial": device.serial} if "{serial}" in operation.path else None
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in (None, ours) if ours else (None,):
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

                @given(case=strategy, headers=st.just(headers))
                @settings(
                    max_examples=examples,
                    deadline=None,
                    database=None,
                    derandomize=not full_size,
                    suppress_health_check=list(HealthCheck),
                )
                def fuzz(case: Any, headers: dict[str, str]) -> None:
                    response = case.call(session=session, headers=headers, timeout=30)
                    tally.check(case, response)

                fuzz()

    # Then no 5xx, every answer documented and in its shape, nothing stored by a refusal
    sent = sum(tally.statuses.values())
    print(f"schemathesis per operation: {sent} requests, statuses {dict(tally.statuses)}")
    assert sum(tally.statuses.values()) >= len(operations) * 2
    assert not tally.problems, "\n".join(tally.problems[:20])
    assert not [status for status in tally.statuses if status >= 500], tally.statuses


def test_stateful_runs_follow_the_links_and_answer_as_documented(
    system: EmbeddedSystem, client: SandboxClient, schema: Any, full_size: bool
) -> None:
    # Given a customer with a linked device, which the device list links to
    customer = client.create_customer("schemathesis stateful")
    linked = client.link_device(customer, MODEL_ID, "FUZZST002", SLOTS, is_test=True)
    client.post_usage(linked, [remaining("Filter", 90.0, system.clock.now())])
    tally = Tally(system)
    scenarios, steps = FULL_STEPS if full_size else SHORT_STEPS
    followed: Counter[str] = Counter()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": _headers(case.operation, linked), "timeout": 30}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            followed[f"{case.method} {case.path}"] += 1
            tally.check(case, response)

    # When schemathesis runs scenarios through the links
    Machine.run(
        settings=settings(
            max_examples=scenarios,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            derandomize=not full_size,
            suppress_health_check=list(HealthCheck),
        )
    )

    # Then it went past the list, and every answer was as documented
    calls = sum(followed.values())
    print(f"schemathesis stateful: {calls} calls {dict(followed)}, statuses {dict(tally.statuses)}")
    assert len(followed) >= 2, followed
    assert not tally.problems, "\n".join(tally.problems[:20])
    assert not [status for status in tally.statuses if status >= 500], tally.statuses
