"""Soak under faults: a fleet on the embedded system for simulated days, with DRS and LWA misbehaving.

``python -m bench.soak`` (a mid-size run over a simulated month, also part of ``make bench``, whose
summary quotes its DRS calls per device-day), ``--short`` (the test suite's), ``--full`` (200 devices,
30 simulated days), or ``--devices N --days D``.

The fleet lives through the real HTTP API (``sandbox.scenario``: devices report their slots a few
times a day, customers load what Amazon delivered), while the simulator fails 20 % of the calls of each
DRS and LWA route it serves, each after a wall-clock delay, and delivers the notifications with
duplicates and out of order:
- ``replenish``: a slow success, longer than the client waits (HTTP_READ_TIMEOUT): the order is placed
  and the client times out, then retries — the classic way to order twice;
- ``slotStatus`` 500, ``deviceStatus`` 503, ``getOrderInfo`` 429, LWA ``token`` 500: retried by the
  client, then by the queues.

At the end every invariant must hold (``sandbox.scenario.check_system``: no overlapping order, one order
per need, cooldowns, a deviceStatus every day, no notification lost, DLQs empty, no 5xx, no function
error but the injected kind), and three more of its own: every notification id the simulator published
was handled by the notifications function (ids compared, duplicates included), every subscribed slot
got its slotStatus every day, and the run did exercise the faults (orders, timeouts, retries).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from bench.table import print_table

HOUR = 3600.0
DAY = 24 * HOUR
SHIP_AFTER = timedelta(hours=18)
# The client's read timeout, and the replenish delay that outlasts it.
READ_TIMEOUT_S = 0.25
SLOW_REPLENISH_MS = 400.0
FAULT_LATENCY_MS = 30.0
# Errors a function may raise while DRS or LWA are failing: the queues and streams retry them.
INJECTED_ERRORS = frozenset(
    {"DrsRetryableError", "LwaRetryableError", "ReportJobIncomplete", "ReadTimeout", "ConnectionError"}
)


@dataclass(frozen=True)
class SoakPlan:
    devices: int = 20
    days: int = 4
    readings_per_day: int = 4
    fault_rate: float = 0.2
    duplicate_rate: float = 0.1
    reorder_rate: float = 0.1
    # The simulator's world (docs/api.md §3): parcels late 1 to 4 days, notifications lost.
    late_parcel_rate: float = 0.1
    lost_notification_rate: float = 0.05
    seed: int = 5


SHORT = SoakPlan(devices=12, days=3)
# ``make bench``: a month, so that orders are checked with DRS and subscriptions re-read as in steady state.
BENCH = SoakPlan(devices=12, days=30, readings_per_day=2)
# A simulated month: every slot goes through order, shipment, delivery, refill and new orders.
FULL = SoakPlan(devices=200, days=30, readings_per_day=2)
# The daily visit's DRS calls (deviceStatus, slotStatus, getOrderInfo, subscriptionInfo) per device-day.
DRS_CALLS_PER_DEVICE_DAY_BUDGET = 3.2
VISIT_OPERATIONS = ("deviceStatus", "slotStatus", "getOrderInfo", "subscriptionInfo")
VISIT_STAT = f"DRS calls per device-day, daily visit (budget {DRS_CALLS_PER_DEVICE_DAY_BUDGET})"


@dataclass
class SoakResult:
    plan: SoakPlan
    checks: list[Any]  # sandbox.scenario.CheckResult
    stats: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def failures(self) -> list[str]:
        return [f"{check.name}: {failure}" for check in self.checks for failure in check.failures]


# ------------------------------------------------------------------------------ what the fleet does


class NotificationLedger:
    """The notification ids the notifications function handled: every record of an invocation that did
    not raise, minus the ones it reported as failed (partial batch response)."""

    def __init__(self) -> None:
        self.handled: set[str] = set()
        self.records = 0

    @contextlib.contextmanager
    def following(self, system: Any) -> Iterator[NotificationLedger]:
        runner = system.runner
        original = runner.invoke

        def invoke(name_or_id: str, event: Any) -> Any:
            outcome = original(name_or_id, event)
            if outcome.function == "notifications" and outcome.ok and isinstance(event, dict):
                self._handled(event, outcome.result or {})
            return outcome

        runner.invoke = invoke
        try:
            yield self
        finally:
            del runner.invoke

    def _handled(self, event: dict[str, Any], result: Mapping[str, Any]) -> None:
        failed = {item.get("itemIdentifier") for item in result.get("batchItemFailures", [])}
        for record in event.get("Records", []):
            self.records += 1
            if record.get("messageId") in failed:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                message = json.loads(json.loads(record["body"])["Message"])
                self.handled.add(str(message["notificationInfo"]["notificationId"]))


def published_ids(notifications: Sequence[Mapping[str, Any]]) -> set[str]:
    """The notification ids the simulator published (a duplicate delivery repeats an id)."""
    ids = set()
    for note in notifications:
        message = json.loads(str(note["envelope"]["Message"]))
        ids.add(str(message["notificationInfo"]["notificationId"]))
    return ids


def check_notification_ids(published: set[str], handled: set[str]) -> list[str]:
    """Every published notification id was handled."""
    missing = sorted(published - handled)
    return [f"notification {note_id} was published but never handled" for note_id in missing[:20]] + (
        [f"… and {len(missing) - 20} more"] if len(missing) > 20 else []
    )


def check_daily_slot_status(
    calls: Sequence[Mapping[str, Any]],
    slots: Mapping[str, Sequence[str]],
    linked_at: Mapping[str, datetime],
    *,
    end: datetime,
) -> list[str]:
    """Every subscribed slot of every device got an accepted ``slotStatus`` on every whole UTC day after
    its link (DRS: at least daily per slot; the worker reports measured subscribed slots daily)."""
    reported: dict[tuple[str, str], set[str]] = defaultdict(set)
    for call in calls:
        if call.get("operation") == "slotStatus" and call.get("status") == 200 and not call.get("fault"):
            reported[(str(call.get("serial")), str(call.get("slotId")))].add(str(call["at"])[:10])
    failures = []
    for serial, slot_ids in sorted(slots.items()):
        start = linked_at[serial]
        first = datetime(start.year, start.month, start.day, tzinfo=start.tzinfo) + timedelta(days=1)
        for slot_id in slot_ids:
            day, missing = first, []
            while day + timedelta(days=1) <= end:
                if day.date().isoformat() not in reported[(serial, slot_id)]:
                    missing.append(day.date().isoformat())
                day += timedelta(days=1)
            if missing:
                failures.append(f"{serial}/{slot_id}: no slotStatus on {', '.join(missing)}")
    return failures


class Fleet:
    """The devices, their customers and Amazon, stepping through the plan."""

    def __init__(self, system: Any, plan: SoakPlan) -> None:
        from sandbox.scenario import DeviceModel, Product, SandboxClient, Timeline

        self.system = system
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.timeline = Timeline(system.control).attach(system)
        # Links are recorded on the timeline (the daily-report check needs them); readings are not: each
        # recorded event asks the simulator for the time.
        self.linker = SandboxClient.for_system(system, timeline=self.timeline)
        self.client = SandboxClient.for_system(system)
        self.model = DeviceModel(
            "SoakPurifier",
            {"Filter": Product("B0SOAKFLT1", 100, "L"), "Cleaner": Product("B0SOAKCLN1", 400, "ml")},
        )
        self.devices: list[Any] = []  # sandbox.scenario.SimulatedDevice
        self.shipped: set[str] = set()
        self.delivered_seen = 0
        self.requests = 0

    def link(self) -> None:
        from sandbox.scenario import SimulatedDevice

        start = self.system.clock.now()
        for number in range(self.plan.devices):
            customer = self.linker.create_customer(f"soak customer {number}")
            serial = f"SOAK{number:05d}"
            linked = self._link(customer, serial)
            self.devices.append(
                SimulatedDevice(
                    linked,
                    levels={"Filter": self.rng.uniform(0.25, 0.6), "Cleaner": self.rng.uniform(0.25, 0.6)},
                    # 4 to 7 % of a slot a day: a package outlasts the reorder horizon (lead time + safety,
                    # 9 days), so each need is one order; most slots start below their reorder point.
                    daily_use={"Filter": self.rng.uniform(4, 7), "Cleaner": self.rng.uniform(16, 28)},
                    noise=0.2,
                    start=start,
                )
            )
        self.system.drain()
        self.timeline.poll()

    def _link(self, customer: Any, serial: str) -> Any:
        """Link one device; on a busy machine the backend's code exchange may outlast the soak's short
        read timeout: refused as spent on the retry (400) or unanswered (503). The customer consents
        again, as in life (faults are not on yet: this is the machine, not the scenario)."""
        from sandbox.scenario import ApiError

        for _ in range(4):
            try:
                return self.linker.link_device(customer, self.model.model_id, serial, self.model.slots)
            except ApiError as refused:
                if refused.status not in (400, 503):
                    raise
        return self.linker.link_device(customer, self.model.model_id, serial, self.model.slots)

    def faults(self, on: bool) -> None:
        """The fault rules of the module docstring (``on=False`` removes them)."""
        control, plan = self.system.control, self.plan
        rate = plan.fault_rate if on else 0.0
        rules = {
            "replenish": (200, SLOW_REPLENISH_MS),
            "slotStatus": (500, FAULT_LATENCY_MS),
            "deviceStatus": (503, FAULT_LATENCY_MS),
            "getOrderInfo": (429, FAULT_LATENCY_MS),
            "token": (500, FAULT_LATENCY_MS),
        }
        for offset, (endpoint, (status, latency)) in enumerate(rules.items()):
            control.set_fault(endpoint, rate, status=status, latency_ms=latency, seed=plan.seed + offset)
        if on:
            control.configure_notifications(
                duplicateRate=plan.duplicate_rate, reorderRate=plan.reorder_rate, seed=plan.seed
            )
            control.configure_world(
                lateParcelRate=plan.late_parcel_rate,
                lostNotificationRate=plan.lost_notification_rate,
                seed=plan.seed,
            )

    def step(self) -> None:
        from sandbox.scenario import EventKind, idempotency_key

        previous = self.system.clock.now()
        self.system.advance(DAY / self.plan.readings_per_day)
        now = self.system.clock.now()
        self.timeline.poll()
        delivered = self.timeline.of(EventKind.ORDER_DELIVERED)
        by_serial = {device.serial: device for device in self.devices}
        for event in delivered[self.delivered_seen :]:
            device = by_serial.get(str(event.serial))
            if device is not None and event.slot_id in device.slots:
                device.deliver(event.slot_id, event.at)
        self.delivered_seen = len(delivered)
        for order in self.timeline.orders.values():
            confirmed = order.confirmed_at
            if (
                order.open
                and order.instance_id not in self.shipped
                and confirmed
                and now - confirmed >= SHIP_AFTER
            ):
                self.system.control.order_action(order.instance_id, "ship")
                self.shipped.add(order.instance_id)
        for device in self.devices:
            for slot_id, at in device.live(previous, now, self.rng):
                self.timeline.record(EventKind.REFILL, at=at, serial=device.serial, slot_id=slot_id)
            readings = device.readings(now)
            if readings:
                self.client.post_usage(
                    device.device, readings, idempotency_key(device.serial, now.isoformat())
                )
                self.requests += 1
        self.system.drain()


# ------------------------------------------------------------------------------ the run


def run_soak(system: Any, plan: SoakPlan) -> SoakResult:
    """Play ``plan`` on a started system and judge it."""
    from sandbox.scenario import CheckResult, EventKind, backend_orders, check_no_slot_stuck, check_system

    started = time.perf_counter()
    fleet = Fleet(system, plan)
    ledger = NotificationLedger()
    with ledger.following(system):
        fleet.link()
        fleet.faults(on=True)
        for _ in range(plan.days * plan.readings_per_day):
            fleet.step()
        # Faults off, then a quiet hour: what the queues still hold is retried and finishes.
        fleet.faults(on=False)
        system.advance(HOUR)
        fleet.timeline.poll()
        timeline = fleet.timeline
        checks = check_system(
            system, timeline, expected_error=lambda error: error.error_type in INJECTED_ERRORS
        )
    end = system.clock.now()
    published = published_ids(timeline.notifications)
    linked_at = {device.serial: device.device.linked_at for device in fleet.devices}
    slots = {device.serial: list(device.slots) for device in fleet.devices}
    calls = timeline.calls
    faults = [call for call in calls if call.get("fault")]
    placed = timeline.of(EventKind.ORDER_PLACED)
    adopted = timeline.of(EventKind.ORDER_ADOPTED)
    slow_replenish = sum(1 for call in faults if call["operation"] == "replenish")
    checks += [
        CheckResult(
            "every published notification id handled",
            check_notification_ids(published, ledger.handled),
            f"{len(published)} ids published, {len(timeline.notifications)} deliveries, "
            f"{ledger.records} records handled",
        ),
        CheckResult(
            "every subscribed slot reported (slotStatus) every day",
            check_daily_slot_status(calls, slots, linked_at, end=end),
            f"{len(timeline.of(EventKind.REPORT_SLOT))} slotStatus reports",
        ),
        CheckResult(
            "the faults were exercised",
            [
                f"never happened: {name}"
                for name, seen in (
                    ("an order placed", bool(placed)),
                    ("a replenish answered after the client gave up", slow_replenish > 0),
                    ("a failed report retried", any(c["operation"] == "slotStatus" for c in faults)),
                    ("a duplicate notification", len(timeline.notifications) > len(published)),
                )
                if not seen
            ],
            f"{len(faults)} calls faulted",
        ),
    ]
    backend = backend_orders(fleet.client, fleet.devices)
    checks.append(
        CheckResult(
            "no slot stuck: every slot in use gets its next order when due",
            check_no_slot_stuck(fleet.devices, timeline.amazon_orders, backend, timeline.events, now=end),
            f"{len(backend)} slots",
        )
    )
    visit = visit_calls_per_device_day(calls, linked_at, end=end)
    unsettled = open_orders_unsettled(timeline.amazon_orders, backend, now=end)
    world = system.control.configure_world()["counts"]
    pumps = system.pump_stats()
    result = SoakResult(plan, checks, wall_seconds=time.perf_counter() - started)
    result.stats = {
        "devices x simulated days": f"{plan.devices} x {plan.days}",
        "usage requests": fleet.requests,
        "orders placed (replenish → placed)": len(placed),
        "replenish answered ORDER_INPROGRESS (adopted)": len(adopted),
        "slow replenish (client timed out)": slow_replenish,
        "DRS/LWA calls faulted / all": f"{len(faults)} / {len(calls)}",
        "notifications published / deliveries": f"{len(published)} / {len(timeline.notifications)}",
        "queue redeliveries (sqs retried)": sum(
            s["retried"] for n, s in pumps.items() if n.endswith("<-sqs")
        ),
        "stream batches retried": sum(s["retried"] for n, s in pumps.items() if n.endswith("<-stream")),
        "function errors (injected kind)": len(timeline.function_errors),
        "refills (deliveries loaded)": len(timeline.of(EventKind.REFILL)),
        "parcels late / notifications lost (the world)": "{lateParcels} / {lostNotifications}".format(
            **world
        ),
        "backend's open orders at the end: in flight at Amazon / closed there, before their deadline "
        "/ past it": " / ".join(map(str, unsettled)),
        "getOrderInfo / subscriptionInfo calls": " / ".join(
            str(sum(1 for c in calls if c["operation"] == op and not c.get("fault")))
            for op in ("getOrderInfo", "subscriptionInfo")
        ),
        VISIT_STAT: f"{visit:.3f}",
    }
    return result


def visit_calls_per_device_day(
    calls: Sequence[Mapping[str, Any]], linked_at: Mapping[str, datetime], *, end: datetime
) -> float:
    """The daily visit's answered DRS calls (faults left out) per device-day linked."""
    device_days = sum((end - start).total_seconds() / DAY for start in linked_at.values())
    made = sum(1 for c in calls if c["operation"] in VISIT_OPERATIONS and not c.get("fault"))
    return made / device_days if device_days else 0.0


def open_orders_unsettled(
    amazon_orders: Sequence[Mapping[str, Any]],
    backend: Mapping[tuple[str, str], Mapping[str, Any]],
    *,
    now: datetime,
) -> tuple[int, int, int]:
    """The backend's open orders: still open at Amazon; closed there within ``STUCK_AFTER`` (the daily
    visit has yet to ask); closed there longer ago (unsettled: the stuck-slot check fails on those)."""
    from drs_core.clock import parse_iso
    from sandbox.scenario import STUCK_AFTER

    known = {str(o["instanceId"]): o for o in amazon_orders}
    counts = [0, 0, 0]
    for order in backend.values():
        if order.get("state") not in ("PLACED", "SHIPPED"):
            continue
        amazon = known.get(str(order.get("instanceId")), {})
        closed = amazon.get("closedAt")
        if not closed:
            counts[0] += 1
        else:
            counts[1 if now - parse_iso(str(closed)) < STUCK_AFTER else 2] += 1
    return counts[0], counts[1], counts[2]


def soak(plan: SoakPlan) -> SoakResult:
    """Start an embedded system, play ``plan``, stop it."""
    from sandbox.system import EmbeddedSystem

    environment = {
        "HTTP_READ_TIMEOUT": str(READ_TIMEOUT_S),
        # The client's retries back off in wall-clock time: a short budget keeps the run fast (an
        # immediate retry still happens; later ones are left to the queues, on the simulated clock).
        "HTTP_MAX_TOTAL_SECONDS": "0.4",
    }
    with (
        open(os.devnull, "w") as null,
        contextlib.redirect_stdout(null),  # the functions' JSON logs and EMF documents
        # Retried faults log warnings by the hundred; an error would still show.
        EmbeddedSystem(
            gateway_port=0, simulator_port=0, environment=environment, function_log_level="ERROR"
        ) as system,
    ):
        return run_soak(system, plan)


def print_result(result: SoakResult) -> None:
    plan = result.plan
    print_table(
        f"Soak: {plan.devices} devices, {plan.days} simulated days, {plan.fault_rate:.0%} of DRS/LWA calls "
        f"faulted with latency, notifications {plan.duplicate_rate:.0%} duplicated / {plan.reorder_rate:.0%} "
        f"reordered ({result.wall_seconds:.0f} s)",
        ["check", "holds", "detail"],
        [
            [check.name, "yes" if check.ok else f"NO ({len(check.failures)})", check.detail]
            for check in result.checks
        ],
    )
    print_table("Soak: what happened", ["measure", "value"], [[k, v] for k, v in result.stats.items()])
    for failure in result.failures[:30]:
        print(f"  FAILED {failure}")


@cache
def measure() -> SoakResult:
    """The ``make bench`` soak (cached: the summary quotes it)."""
    return soak(BENCH)


def run() -> None:
    """``make bench``: the mid-size soak over a simulated month."""
    print_result(measure())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--short", action="store_true", help=f"{SHORT.devices} devices, {SHORT.days} days")
    size.add_argument("--full", action="store_true", help=f"{FULL.devices} devices, {FULL.days} days")
    parser.add_argument("--devices", type=int, help="override the number of devices")
    parser.add_argument("--days", type=int, help="override the simulated days")
    parser.add_argument("--seed", type=int, help="fault draws and consumption noise")
    args = parser.parse_args(argv)
    plan = SHORT if args.short else FULL if args.full else BENCH
    overrides = {
        name: value
        for name, value in (("devices", args.devices), ("days", args.days), ("seed", args.seed))
        if value
    }
    plan = replace(plan, **overrides)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    # Every injected timeout would make urllib3 warn; the sandbox's set-up notes are not the soak's.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    logging.getLogger("sandbox").setLevel(logging.ERROR)
    result = soak(plan)
    print_result(result)
    return 1 if result.failures else 0


def _ensure_importable() -> None:
    root = Path(__file__).resolve().parents[1]
    for path in (root, root / "layers" / "core" / "python"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


if __name__ == "__main__":
    _ensure_importable()
    sys.exit(main())
