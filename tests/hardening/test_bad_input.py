"""Bad input through the local gateway (issue 16 §3): each answers 400 with the error shape and stores
nothing, never a 5xx; a serial with ``+`` works percent-encoded as it does literally; identical readings
in one request count once; the settings page returns only to https or the app's own schemes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from sandbox.scenario import LinkedDevice, SandboxClient, consumed, remaining
from sandbox.system import EmbeddedSystem
from tests.hardening.conftest import MODEL_ID, SLOTS, answer_problems, table_snapshot

NOW_SLOT = "Filter"


@pytest.fixture(scope="module")
def device(system: EmbeddedSystem, client: SandboxClient) -> LinkedDevice:
    """A linked device whose serial carries a ``+``."""
    customer = client.create_customer("bad input")
    linked = client.link_device(customer, MODEL_ID, "BAD+INPUT1", SLOTS)
    client.post_usage(linked, [remaining(NOW_SLOT, 90.0, system.clock.now())])
    return linked


def _usage(system: EmbeddedSystem, device: LinkedDevice, body: str | bytes, serial: str | None = None) -> Any:
    return requests.post(
        f"{system.gateway_url}/v1/devices/{serial or device.serial}/usage",
        data=body,
        headers={"Authorization": f"Device {device.device_token}", "Content-Type": "application/json"},
        timeout=30,
    )


def _reading(**fields: Any) -> str:
    return json.dumps({"readings": [{"slotId": NOW_SLOT, **fields}]})


# Readings that are well-formed JSON but must be refused: dates that are ISO but not convertible to UTC
# or hold a control character, and numbers DynamoDB cannot store (under 1E-130, beyond 38 digits).
BAD_READINGS = {
    "date before year 1 in UTC": _reading(observedAt="0001-01-01T00:00:00+01:00", remainingQuantity=1),
    "date after year 9999 in UTC": _reading(observedAt="9999-12-31T23:59:59-01:00", remainingQuantity=1),
    "control character as the date-time separator": _reading(
        observedAt="2026-01-01\u001f00:00:00Z", remainingQuantity=1
    ),
    "quantity under DynamoDB's smallest number": _reading(
        observedAt="2026-01-01T00:00:00Z", remainingQuantity=1e-200
    ),
    "consumed quantity under 1E-130": _reading(observedAt="2026-01-01T00:00:00Z", consumedQuantity=1e-131),
    "quantity needing more than 38 digits": _reading(
        observedAt="2026-01-01T00:00:00Z", remainingQuantity=1.2345678901234567e-30
    ),
    "JSON nested 5000 deep": '{"readings": ' + "[" * 5000 + "]" * 5000 + "}",
}


@pytest.mark.parametrize("case", BAD_READINGS)
def test_a_bad_reading_answers_400_and_stores_nothing(
    system: EmbeddedSystem, device: LinkedDevice, case: str
) -> None:
    # Given the tables as they are
    before = table_snapshot(system)

    # When the device sends the bad reading
    answer = _usage(system, device, BAD_READINGS[case])

    # Then 400 with the error shape, nothing stored
    assert (answer.status_code, answer_problems(answer)) == (400, []), answer.text[:300]
    assert table_snapshot(system) == before


def test_deep_json_to_a_companion_route_answers_400(system: EmbeddedSystem, device: LinkedDevice) -> None:
    # When the app sends a policy change nested thousands deep
    answer = requests.put(
        f"{system.gateway_url}/v1/devices/{device.serial}/slots/Filter/policy",
        data='{"autoReorder": ' + "[" * 5000 + "]" * 5000 + "}",
        headers={"Authorization": f"Bearer {device.customer.app_token}", "Content-Type": "application/json"},
        timeout=30,
    )

    # Then 400, not 500
    assert (answer.status_code, answer_problems(answer)) == (400, [])


def test_a_policy_number_dynamodb_cannot_store_answers_400(
    system: EmbeddedSystem, device: LinkedDevice
) -> None:
    before = table_snapshot(system)
    answer = requests.put(
        f"{system.gateway_url}/v1/devices/{device.serial}/slots/Filter/policy",
        json={"thresholdFraction": 1e-200},
        headers={"Authorization": f"Bearer {device.customer.app_token}"},
        timeout=30,
    )
    assert (answer.status_code, answer_problems(answer)) == (400, [])
    assert table_snapshot(system) == before


def test_a_serial_with_plus_works_percent_encoded_as_it_does_literally(
    system: EmbeddedSystem, device: LinkedDevice
) -> None:
    # When the device reports, and the app reads, with the serial's "+" percent-encoded
    encoded = device.serial.replace("+", "%2B")
    now = system.clock.now().isoformat()
    usage = _usage(system, device, _reading(observedAt=now, remainingQuantity=80), serial=encoded)
    read = requests.get(
        f"{system.gateway_url}/v1/devices/{encoded}",
        headers={"Authorization": f"Bearer {device.customer.app_token}"},
        timeout=30,
    )

    # Then both work as with the literal serial
    assert usage.status_code == 202, usage.text[:300]
    assert read.status_code == 200 and read.json()["serial"] == device.serial


def test_identical_readings_in_one_request_count_once(
    system: EmbeddedSystem, client: SandboxClient, device: LinkedDevice
) -> None:
    # Given the slot's level
    at = system.clock.now()
    client.post_usage(device, [remaining("Cleaner", 400.0, at)])

    # When one request carries the same consumption twice (same slot, same observedAt)
    _, answer = client.post_usage(device, [consumed("Cleaner", 10.0, at), consumed("Cleaner", 10.0, at)])

    # Then it counted once
    slot = next(s for s in answer["slots"] if s["slotId"] == "Cleaner")
    assert slot["remainingQuantity"] == 390.0


def test_two_different_readings_of_one_slot_at_one_time_are_refused(
    system: EmbeddedSystem, client: SandboxClient, device: LinkedDevice
) -> None:
    before = table_snapshot(system)
    at = system.clock.now()
    status, answer = client.post_usage(
        device, [remaining("Cleaner", 300.0, at), remaining("Cleaner", 200.0, at)], expect=(202, 400)
    )
    assert (status, answer.get("error", {}).get("code")) == (400, "CONFLICTING_READINGS")
    assert table_snapshot(system) == before


EXIT_URIS = {
    "javascript:alert(document.cookie)": 400,
    "JavaScript:alert(1)": 400,
    "data:text/html,<script>alert(1)</script>": 400,
    "http://example.com/done": 400,
    "https:///no-host": 400,
    "https://example.com/done": 200,
    "myapp://settings-done": 200,  # the app's own scheme, configured for this stage
    "http://127.0.0.1:8080/app/": 200,  # the sandbox's web app: loopback http, allowed in the sandbox only
    "http://127.0.0.1.example.com/": 400,
}


@pytest.mark.parametrize("exit_uri", EXIT_URIS)
def test_the_settings_page_returns_only_to_https_or_the_apps_own_scheme(
    system: EmbeddedSystem, device: LinkedDevice, exit_uri: str
) -> None:
    answer = requests.get(
        f"{system.gateway_url}/v1/devices/{device.serial}/settings-link",
        params={"exitUri": exit_uri},
        headers={"Authorization": f"Bearer {device.customer.app_token}"},
        timeout=30,
    )
    assert (answer.status_code, answer_problems(answer)) == (EXIT_URIS[exit_uri], [])
    if answer.status_code == 400:
        assert answer.json()["error"]["code"] == "INVALID_EXIT_URI"
