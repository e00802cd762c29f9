"""The demo's scenario on the real app, its invariant checks, and the README's sandbox examples.

(1) plays the short version of ``make demo``'s scenario on the embedded system and requires every
invariant to hold; (2) shows each invariant check failing on the history it exists to catch; (3) runs
the README's "Try it locally" curl examples, as written, against the components ``make sandbox`` runs.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from drs_core.clock import to_iso
from sandbox.demo import DemoResult, run_scenario, short_plan
from sandbox.scenario import (
    Event,
    EventKind,
    FunctionError,
    check_cooldowns,
    check_daily_device_status,
    check_dead_letter_queues,
    check_function_errors,
    check_no_gateway_5xx,
    check_no_overlapping_orders,
    check_notifications_delivered,
    check_one_order_per_need,
)
from sandbox.system import EmbeddedSystem
from sandbox.template import SandboxTemplate, load_sandbox_template

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PRINTED: dict[int, str] = {}  # what a run printed, by id of its result


@pytest.fixture(scope="module")
def app_template() -> SandboxTemplate:
    """The real app's template (synthesized once, or read from .sandbox-cache/)."""
    return load_sandbox_template()


@pytest.fixture(scope="module")
def short_run(
    app_template: SandboxTemplate, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoResult]:
    """The short scenario, played once for the module."""
    out = io.StringIO()
    charts = tmp_path_factory.mktemp("demo-output")
    with EmbeddedSystem(
        template=app_template,
        gateway_port=0,
        simulator_port=0,
        environment={"HTTP_MAX_TOTAL_SECONDS": "2"},
    ) as system:
        result = run_scenario(system, short_plan(), out=out, output_dir=charts)
    PRINTED[id(result)] = out.getvalue()
    yield result


# ------------------------------------------------------------------------------------ (1) the scenario


def test_the_short_scenario_covers_its_cases_and_every_invariant_holds(short_run: DemoResult) -> None:
    # Given the short scenario, played through the gateway and the simulator on the real app
    timeline, text = short_run.timeline, PRINTED[id(short_run)]
    # When its checks ran
    failures = short_run.failures
    # Then every invariant held, and the story happened: orders, a cancel, a deregistration, faults
    assert failures == [], text
    assert len(short_run.checks) >= 8 and all(check.ok for check in short_run.checks)
    assert timeline.of(EventKind.ORDER_PLACED) and timeline.of(EventKind.ORDER_SHIPPED)
    assert timeline.of(EventKind.ORDER_CANCELLED, serial="WF-1002", slot_id="Filter")
    assert timeline.of(EventKind.DEREGISTERED, serial="PR-2003")
    assert timeline.of(EventKind.USAGE_REFUSED, serial="PR-2003")  # its next upload was refused
    assert timeline.of(EventKind.FAULT) and timeline.of(EventKind.TOKEN_REFRESH)
    test_orders = timeline.of(EventKind.ORDER_PLACED, serial="WF-9001")
    assert test_orders and all(e.data["detailCode"] == "TEST_ORDER_PLACED" for e in test_orders)
    # And it printed its progress day by day, then the summary and the checks
    assert "-- day  0 done (2026-01-01)" in text and "-- day  7 done" in text
    assert "== summary" in text and "[ok] every linked device reported" in text
    assert {row["device"] for row in short_run.rows} == {"WF-1002", "PR-2002", "WF-9001", "PR-2003"}


def test_the_short_scenario_writes_one_chart_per_slot(short_run: DemoResult) -> None:
    # Given the short run's charts
    charts = short_run.charts
    # When each is parsed as SVG
    documents = [ElementTree.parse(path).getroot() for path in charts]  # noqa: S314 - files we just wrote
    # Then there is one per slot, each with the level line, axis labels and the order markers
    assert sorted(p.name for p in charts) == sorted(
        f"{serial}-{slot}.svg" for serial, d in short_run.devices.items() for slot in d.slots
    )
    svg = "{http://www.w3.org/2000/svg}"
    for document in documents:
        assert document.tag == f"{svg}svg"
        assert len(document.findall(f"{svg}polyline")) == 1
        labels = [t.text for t in document.iter(f"{svg}text")]
        assert "simulated day" in labels and any(
            label and label.startswith("remaining (") for label in labels
        )
    cancelled_slot = ElementTree.tostring(documents[[p.name for p in charts].index("WF-1002-Filter.svg")])
    assert b"#e67e22" in cancelled_slot and b"#c0392b" in cancelled_slot  # order placed, then cancelled
    assert (charts[0].parent / "index.html").is_file()


# ------------------------------------------------------------------------------------ (2) the checks


def _replenish(at: datetime, detail: str = "STANDARD_ORDER_PLACED", slot: str = "Filter") -> dict[str, Any]:
    return {"at": to_iso(at), "operation": "replenish", "serial": "SN-1", "slotId": slot, "status": 200,
            "detailCode": detail}  # fmt: skip


def _note(
    kind: str, at: datetime, instance_id: str | None = None, eta: datetime | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "notificationInfo": {"notificationType": kind, "notificationTime": to_iso(at)},
        "deviceInfo": {"deviceIdentifier": {"serialNumber": "SN-1"}},
    }
    if instance_id:
        products = [{"estimatedDeliveryDate": to_iso(eta)}] if eta else [{}]
        message["orderInfo"] = {"instanceId": instance_id, "slotId": "Filter", "productInfo": products}
    return {"at": to_iso(at), "envelope": {"Message": json.dumps(message)}}


def test_a_duplicate_fed_into_the_real_history_is_caught(short_run: DemoResult) -> None:
    # Given the short run's calls and notifications, which passed the check
    calls, notes = short_run.timeline.calls, short_run.timeline.notifications
    assert check_no_overlapping_orders(calls, notes) == []
    # When a second replenish placing an order is fed in an hour after a standard order was placed
    placed = next(c for c in calls if c.get("detailCode") == "STANDARD_ORDER_PLACED")
    duplicate = {
        **placed,
        "at": to_iso(datetime.fromisoformat(placed["at"][:19]).replace(tzinfo=UTC) + timedelta(hours=1)),
    }
    failures = check_no_overlapping_orders([*calls, duplicate], notes)
    # Then the check names the slot, the time and the open order (the unnamed duplicate then stays open,
    # so a later order of the slot is reported too)
    assert failures, "the duplicate went unnoticed"
    assert failures[0].startswith(f"{placed['serial']}/{placed['slotId']}: replenish placed an order at")
    assert duplicate["at"] in failures[0]


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        # a second order while the first is still on its way: a duplicate
        ([_replenish(T0), _note("OrderPlacedNotification", T0, "o1", T0 + timedelta(days=3)),
          _replenish(T0 + timedelta(days=1))], 1),
        # the first was cancelled: a new one may follow at once, even at the same instant
        ([_replenish(T0), _note("OrderPlacedNotification", T0, "o1", T0 + timedelta(days=3)),
          _note("OrderCancelledNotification", T0 + timedelta(hours=6), "o1"),
          _replenish(T0 + timedelta(hours=6))], 0),
        # the first was delivered on its estimated date
        ([_replenish(T0), _note("OrderPlacedNotification", T0, "o1", T0 + timedelta(days=3)),
          _replenish(T0 + timedelta(days=3))], 0),
        # an order waiting in the resolution flow (no OrderPlaced yet) stays open
        ([_replenish(T0), _replenish(T0 + timedelta(days=5))], 1),
        # a test order is never delivered by the clock: open until cancelled
        ([_replenish(T0, "TEST_ORDER_PLACED"),
          _note("OrderPlacedNotification", T0, "t1", T0 + timedelta(days=3)),
          _replenish(T0 + timedelta(days=4), "TEST_ORDER_PLACED")], 1),
        # the registration ended: DRS forgets its orders
        ([_replenish(T0), _note("DeviceDeregisteredNotification", T0 + timedelta(hours=1)),
          _replenish(T0 + timedelta(days=1))], 0),
    ],
)  # fmt: skip
def test_the_open_order_check(history: list[dict[str, Any]], expected: int) -> None:
    # Given a history of replenish calls and notifications of one slot
    calls = [item for item in history if "operation" in item]
    notes = [item for item in history if "envelope" in item]
    # When checked
    failures = check_no_overlapping_orders(calls, notes)
    # Then only an order placed while another was open fails it
    assert len(failures) == expected, failures


def _event(kind: EventKind, hours: float, serial: str = "SN-1", slot: str | None = "Filter") -> Event:
    return Event(T0 + timedelta(hours=hours), kind, serial, slot)


def test_the_need_and_cooldown_checks() -> None:
    # Given histories of one slot: orders, a refill, a customer cancel
    twice = [_event(EventKind.ORDER_PLACED, 1), _event(EventKind.ORDER_PLACED, 30)]
    refilled = [
        _event(EventKind.ORDER_PLACED, 1),
        _event(EventKind.REFILL, 20),
        _event(EventKind.ORDER_PLACED, 30),
    ]
    cancelled = [_event(EventKind.ORDER_PLACED, 1), _event(EventKind.ORDER_CANCELLED, 2)]
    too_soon = [*cancelled, _event(EventKind.ORDER_PLACED, 2 + 24 * 4)]
    after_cooldown = [*cancelled, _event(EventKind.ORDER_PLACED, 2 + 24 * 5)]
    # When checked
    # Then two standing orders for one need fail, an order after a refill or after a cancel does not,
    assert len(check_one_order_per_need(twice)) == 1
    assert check_one_order_per_need(refilled) == [] and check_one_order_per_need(after_cooldown) == []
    assert check_one_order_per_need(twice, test_devices=["SN-1"]) == []
    # and an order within five days of a customer cancel fails, unless on a test device
    assert len(check_cooldowns(too_soon)) == 1 and check_cooldowns(after_cooldown) == []
    assert check_cooldowns(too_soon, test_devices=["SN-1"]) == []


def test_the_daily_report_check() -> None:
    # Given a device linked at the start, reported on days 2 and 4 but not 3, deregistered on day 6
    reported = [
        {"at": f"2026-01-0{day}T05:00:00.000Z", "operation": "deviceStatus", "serial": "SN-1", "status": 200}
        for day in (2, 4, 5)
    ]
    periods = {"SN-1": [(T0, T0 + timedelta(days=5, hours=3))]}
    # When checked up to day 8
    failures = check_daily_device_status(reported, periods, end=T0 + timedelta(days=8))
    # Then day 3 is missing; day 1 (linked that day) and day 6 onwards (deregistered) are not due
    assert failures == ["SN-1: no deviceStatus on 2026-01-03"]


def test_the_queue_gateway_and_function_checks() -> None:
    # Given a DLQ message, lost or stuck notifications, a 5xx, and function errors
    dead = {"NotificationsDlq": [{"messageId": "m-1", "body": "{}"}], "ReportJobsDlq": []}
    error = FunctionError("reorder_decision", T0, "DrsRetryableError", "DRS unavailable", "r-1")
    # When checked
    # Then each fails unless explained or expected
    assert len(check_dead_letter_queues(dead)) == 1
    assert check_dead_letter_queues(dead, lambda _queue, _message: "injected poison message") == []
    assert check_notifications_delivered(published=5, handled=5, queued=0, dead=0) == []
    assert len(check_notifications_delivered(published=5, handled=4, queued=0, dead=0)) == 1
    assert len(check_notifications_delivered(published=5, handled=3, queued=1, dead=1)) == 2
    assert check_no_gateway_5xx({200: 4, 404: 1}) == []
    assert check_no_gateway_5xx({200: 4, 502: 2}) == ["the gateway answered 502 2 time(s)"]
    assert len(check_function_errors([error])) == 1
    assert check_function_errors([error], expected=lambda e: e.error_type == "DrsRetryableError") == []
    assert len(check_function_errors([], total=1)) == 1


# ------------------------------------------------------------------------------------ (3) the README


def readme_examples() -> str:
    """The shell block of the README's "Try it locally" section that drives ``make sandbox``."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Try it locally\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    matching = [block for block in blocks if "GATEWAY=" in block and "/__sim/customers" in block]
    assert len(matching) == 1, "the section has one shell block of sandbox examples"
    return matching[0]


@pytest.mark.skipif(not (shutil.which("bash") and shutil.which("curl")), reason="needs bash and curl")
def test_the_readme_examples_work_as_written_against_the_sandbox(app_template: SandboxTemplate) -> None:
    # Given the system `make sandbox` serves (background pumps, the real app), and the README's examples
    script = readme_examples()
    with EmbeddedSystem(template=app_template, gateway_port=0, simulator_port=0, background=True) as sandbox:
        env = {
            **os.environ,
            "GATEWAY": sandbox.gateway_url,
            "SIM": sandbox.simulator_url,
            # `python3` in the examples: the interpreter running the tests, whatever the machine has
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        # When they run as written, each command required to succeed (curl -f, errexit, pipefail)
        command = ["bash", "-o", "errexit", "-o", "nounset", "-o", "pipefail", "-c", script]
        # The README's own examples in a throwaway sandbox; bash from PATH, as a reader's shell.
        ran = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
        statuses = sandbox.http_statuses
    # Then every command succeeded and printed JSON
    assert ran.returncode == 0, ran.stderr
    answers = [json.loads(line) for line in ran.stdout.splitlines() if line.strip()]
    keys = {"slots", "serial", "now", "calls", "notifications", "awsEndpoint"}
    assert [set(answer) & keys for answer in answers] == [
        {"slots"}, {"serial", "slots"}, {"now"}, {"calls"}, {"notifications"}, {"awsEndpoint"},
        {"serial", "slots"},
    ]  # fmt: skip
    usage, _first, clock, calls, notes, resources, device = answers
    # And the readings landed, a simulated day passed, DRS saw the link, AWS resources are listed
    assert {s["slotId"]: s["remainingQuantity"] for s in usage["slots"]} == {"Filter": 20.0, "Cleaner": 450.0}
    assert clock["now"] == "2026-01-02T00:00:00.000Z"
    assert {"token", "subscriptionInfo"} <= {call["operation"] for call in calls["calls"]}
    assert "DeviceRegisteredNotification" in notes["notifications"][0]["envelope"]["Message"]
    assert resources["tables"] and resources["queues"]
    # And the final state shows the linked device with both slots and the products picked
    assert device["serial"] == "WF-0001" and device["status"] == "LINKED"
    slots = {slot["slotId"]: slot for slot in device["slots"]}
    assert set(slots) == {"Filter", "Cleaner"}
    assert (slots["Filter"]["asin"], slots["Filter"]["originalQuantity"]) == ("B0WFILTER01", 150.0)
    assert (slots["Cleaner"]["asin"], slots["Cleaner"]["originalQuantity"]) == ("B0WCLEAN01", 500.0)
    assert not [code for code in statuses if code >= 500]


def test_a_package_loaded_at_the_sampling_instant_gives_one_reading_of_the_slot_at_that_time() -> None:
    from datetime import UTC, datetime, timedelta

    from sandbox.scenario import Customer, LinkedDevice, Product, SimulatedDevice

    # Given a dry slot whose package arrives exactly when the device samples
    start = datetime(2026, 1, 1, tzinfo=UTC)
    linked = LinkedDevice(
        serial="SAMPLE-1",
        model_id="WaterFilterPro",
        customer=Customer("Ana", "amzn1.account.ANA", "token"),
        device_token="device-token",
        slots={"Filter": Product("B00FILTER1", 2, "count")},
    )
    device = SimulatedDevice(linked, levels={"Filter": 0.0}, daily_use={"Filter": 0.1}, start=start)
    device.readings(start)
    end = start + timedelta(hours=6)
    device.deliver("Filter", end)
    # When it lives up to that instant, loads the package, and reports
    device.live(start, end, random.Random(0))
    readings = device.readings(end)
    # Then no two readings of the slot share an observation time
    times = [(r["slotId"], r["observedAt"]) for r in readings]
    assert len(times) == len(set(times)), readings
    assert any("refilledQuantity" in r for r in readings)
