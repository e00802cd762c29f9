"""``make demo`` / ``python -m sandbox.demo``: the whole product, a month of device life, in a minute or two.

Starts the embedded system (moto-backed AWS built from the CDK template, the DRS + LWA simulator, the
local gateway, the event pumps, one simulated clock) and plays a scenario through the real HTTP API:
water filters and printers of several customers report their consumption a few times a day; the
backend reorders before they run out; Amazon ships and delivers; the customers load what arrived.
On the way: the maker's test device with test orders it cancels, a customer cancel and its 5-day
cooldown, an order stuck in Amazon's resolution flow until the customer fixes it, a device
deregistered on Amazon's side, access tokens expiring every hour and refreshed, and a couple of days
of injected DRS faults. It prints the timeline as it goes, a summary table and the invariant checks,
writes a chart per slot under ``demo-output/``, and exits non-zero if any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from sandbox.scenario import Customer, Event, FunctionError
    from sandbox.simulator.control import SimulatorControl
    from sandbox.system import EmbeddedSystem

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "demo-output"
HOUR = 3600.0
DAY = 24 * HOUR
# Amazon ships an order about a day after it is placed; the customer cancels within hours.
SHIP_AFTER = timedelta(hours=18)
CANCEL_AFTER = timedelta(hours=2)
RESOLVE_AFTER = timedelta(hours=20)
TEST_ORDER_CANCEL_AFTER = timedelta(hours=5)
# The shade of a slot's dry periods on its chart.
DRY_SHADE = "#fadbd8"


def _ensure_importable() -> None:
    """Run from a checkout without PYTHONPATH: find ``drs_core`` and the project's packages."""
    for path in (ROOT, ROOT / "layers" / "core" / "python"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


_ensure_importable()

from sandbox.scenario import (  # noqa: E402 - needs the paths above when run as a script
    CheckResult,
    DeviceModel,
    EventKind,
    Product,
    SandboxClient,
    SimulatedDevice,
    Timeline,
    backend_orders,
    check_no_avoidable_dry,
    check_no_slot_stuck,
    check_system,
    dry_hours,
    dry_periods,
    failures_of,
    idempotency_key,
    short_id,
)

WATER_FILTER = DeviceModel(
    "AquaPure-WF1",
    {
        "Filter": Product("B0WFILTER01", 150, "L", packs=1),
        "Cleaner": Product("B0WCLEAN01", 500, "ml", packs=1),
    },
    "water filter: a 150 L filter cartridge and a 500 ml descaler",
)
PRINTER = DeviceModel(
    "InkJet-P200",
    {"Black": Product("B0INKBLK01", 40, "ml", packs=1), "Color": Product("B0INKCLR01", 30, "ml", packs=1)},
    "printer: black and colour ink cartridges",
)


@dataclass(frozen=True)
class Cast:
    """One device of the scenario: whose it is, how it is used, and its part in the story."""

    customer: str
    serial: str
    model: DeviceModel
    levels: Mapping[str, float]  # starting fill, as a fraction of a full slot
    daily_use: Mapping[str, float]  # average use per day, in the slot's unit
    role: str
    mode: str = "remaining"
    is_test: bool = False
    pkce: bool = False
    order_issue: bool = False


CAST = (
    Cast(
        "Ana",
        "WF-1001",
        WATER_FILTER,
        {"Filter": 0.8, "Cleaner": 0.9},
        {"Filter": 9.0, "Cleaner": 22.0},
        "a household: steady use, reports litres filtered",
        mode="consumed",
    ),
    Cast(
        "Ana",
        "PR-2001",
        PRINTER,
        {"Black": 0.7, "Color": 0.8},
        {"Black": 2.4, "Color": 1.1},
        "linked from the mobile app (PKCE)",
        pkce=True,
    ),
    Cast(
        "Ben",
        "WF-1002",
        WATER_FILTER,
        {"Filter": 0.62, "Cleaner": 0.75},
        {"Filter": 10.0, "Cleaner": 25.0},
        "cancels his first filter order on Amazon: 5 days of cooldown",
        mode="consumed",
    ),
    Cast(
        "Cara",
        "PR-2002",
        PRINTER,
        {"Black": 0.58, "Color": 0.95},
        {"Black": 2.6, "Color": 0.9},
        "card declined: her first order waits in Amazon's resolution flow",
        order_issue=True,
    ),
    Cast(
        "Lab",
        "WF-9001",
        WATER_FILTER,
        {"Filter": 0.5, "Cleaner": 0.95},
        {"Filter": 9.0, "Cleaner": 20.0},
        "the maker's test device: test orders, cancelled from the app",
        is_test=True,
    ),
    Cast(
        "Eve",
        "PR-2003",
        PRINTER,
        {"Black": 0.9, "Color": 0.9},
        {"Black": 2.0, "Color": 1.2},
        "deregistered from Amazon's side mid-way",
    ),
)
CANCELLING = ("WF-1002", "Filter")  # the slot whose first order the customer cancels
DEREGISTERED = "PR-2003"


@dataclass(frozen=True)
class DemoPlan:
    """How long and how the scenario runs; ``short_plan()`` is the test suite's version."""

    days: int = 31
    readings_per_day: int = 4  # each device measures its slots every 6 h ...
    uploads_per_day: int = 2  # ... and uploads what it measured twice a day (IoT devices batch)
    seed: int = 7
    fault_days: tuple[float, float] = (13.0, 15.0)
    fault_rate: float = 0.2
    deregister_day: float = 12.5
    serials: tuple[str, ...] = tuple(cast.serial for cast in CAST)
    # The simulator's world (docs/api.md §3): some parcels late, some notifications lost or delayed.
    late_parcel_rate: float = 0.1
    lost_notification_rate: float = 0.05
    delayed_notification_rate: float = 0.05

    @property
    def cast(self) -> list[Cast]:
        return [cast for cast in CAST if cast.serial in self.serials]


def short_plan() -> DemoPlan:
    """A week-long run of four devices that still covers an order, a cancel, a deregistration, faults."""
    return DemoPlan(
        days=8,
        fault_days=(1.0, 3.0),
        deregister_day=3.5,
        serials=("WF-1002", "PR-2002", "WF-9001", "PR-2003"),
    )


@dataclass
class DemoResult:
    checks: list[CheckResult]
    timeline: Timeline
    devices: dict[str, SimulatedDevice]
    rows: list[dict[str, Any]]
    charts: list[Path] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def failures(self) -> list[str]:
        return failures_of(self.checks)


# ------------------------------------------------------------------------------------ the narrator

# Events worth a line of their own; the rest (readings, reports, routine token refreshes) are counted
# in the daily progress line.
_QUIET = {
    EventKind.USAGE,
    EventKind.REPORT_DEVICE,
    EventKind.REPORT_SLOT,
    EventKind.TOKEN_EXCHANGE,
    EventKind.TOKEN_REFRESH,
    EventKind.DEVICE_REGISTERED,
    EventKind.SUBSCRIPTION_CHANGED,
}


class Narrator:
    """Prints the timeline as it happens: one line per notable event, one progress line per day.

    Events are held until ``flush`` (a step learns of some events after later ones), then printed in
    time order; the day's progress line counts what happened before midnight.
    """

    def __init__(self, out: TextIO, start: datetime) -> None:
        self.out = out
        self.start = start
        self._refreshed: set[str] = set()
        self._day_counts: Counter[EventKind] = Counter()
        self._day_started = time.perf_counter()
        self._held: list[Event] = []

    def when(self, at: datetime) -> str:
        days = int((at - self.start).total_seconds() // DAY)
        return f"day {days:2d} {at:%H:%M}"

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def event(self, event: Event) -> None:
        self._held.append(event)

    def flush(self, until: datetime | None = None) -> None:
        """Count and print the held events (those before ``until`` only, if given), in time order."""
        due = [e for e in self._held if until is None or e.at < until]
        self._held = [e for e in self._held if until is not None and e.at >= until]
        for event in sorted(due, key=lambda e: e.at):
            self._day_counts[event.kind] += (
                int(event.data.get("readings", 1)) if event.kind is EventKind.USAGE else 1
            )
            if event.kind is EventKind.TOKEN_REFRESH and event.serial not in self._refreshed:
                # Every DRS call more than an hour after the last refresh needs a new access token:
                # show the first of each device, count the rest.
                self._refreshed.add(str(event.serial))
            elif event.kind in _QUIET:
                continue
            self.say(f"  {self.when(event.at)}  {event.where:<16} {event.detail}")

    def day_done(self, midnight: datetime, linked: int) -> None:
        """Print the events of the day ending at ``midnight``, then its progress line."""
        self.flush(until=midnight)
        counts = self._day_counts
        wall = time.perf_counter() - self._day_started
        day = int((midnight - self.start).total_seconds() // DAY) - 1
        self.say(
            f"-- day {day:2d} done ({(midnight - timedelta(days=1)):%Y-%m-%d}) | linked {linked} | "
            f"readings {counts[EventKind.USAGE]} | deviceStatus {counts[EventKind.REPORT_DEVICE]} | "
            f"slotStatus {counts[EventKind.REPORT_SLOT]} | "
            f"token refreshes {counts[EventKind.TOKEN_REFRESH]} | "
            f"orders {counts[EventKind.ORDER_PLACED]} | {wall:.1f} s"
        )
        self._day_counts = Counter()
        self._day_started = time.perf_counter()


# ------------------------------------------------------------------------------------ the scenario


class Scenario:
    """The story, step by step: Amazon and the customers act, the devices live and report."""

    def __init__(self, system: EmbeddedSystem, plan: DemoPlan, out: TextIO) -> None:
        self.system = system
        self.plan = plan
        self._control: SimulatorControl = system.control  # type: ignore[assignment]
        self.start = system.clock.now()
        self.narrator = Narrator(out, self.start)
        self.timeline = Timeline(system.control, on_event=self.narrator.event).attach(system)
        self.client = SandboxClient.for_system(system, timeline=self.timeline)
        self.rng = random.Random(plan.seed)
        self.customers: dict[str, Customer] = {}
        self.devices: dict[str, SimulatedDevice] = {}
        self.casts = {cast.serial: cast for cast in plan.cast}
        self._faults_on = False
        self._deregistered = False
        self._cancelled_first = False
        self._troubled_seen: set[str] = set()
        self._test_cancels = 0
        self._test_done = False
        self._delivered_seen = 0

    @property
    def control(self) -> SimulatorControl:
        """Amazon and the customers' side: the simulator's control routes."""
        return self._control

    def now(self) -> datetime:
        """The simulated time."""
        return self.system.clock.now()

    def note(self, text: str, serial: str | None = None, slot_id: str | None = None) -> None:
        self.timeline.record(EventKind.NOTE, serial=serial, slot_id=slot_id, detail=text)

    # --- setup ---------------------------------------------------------------------------------

    def link_everything(self) -> None:
        """Turn the world on, introduce the cast, create the customers, link every device."""
        plan = self.plan
        self.control.configure_world(
            lateParcelRate=plan.late_parcel_rate,
            lostNotificationRate=plan.lost_notification_rate,
            delayedNotificationRate=plan.delayed_notification_rate,
            seed=plan.seed,
        )
        self.narrator.say(
            f"== {len(self.casts)} devices, {self.plan.days} simulated days from {self.start:%Y-%m-%d}; "
            f"Amazon's world: {plan.late_parcel_rate:.0%} of parcels late, "
            f"{plan.lost_notification_rate:.0%} of notifications lost"
        )
        for cast in self.casts.values():
            self.narrator.say(f"   {cast.serial:<8} {cast.customer:<5} {cast.model.description}; {cast.role}")
        for cast in self.casts.values():
            customer = self.customers.get(cast.customer)
            if customer is None:
                customer = self.client.create_customer(cast.customer, order_issue=cast.order_issue)
                self.customers[cast.customer] = customer
            linked = self.client.link_device(
                customer,
                cast.model.model_id,
                cast.serial,
                cast.model.slots,
                is_test=cast.is_test,
                pkce=cast.pkce,
            )
            self.devices[cast.serial] = SimulatedDevice(
                linked,
                levels=cast.levels,
                daily_use=cast.daily_use,
                mode=cast.mode,
                start=self.now(),
            )
        self.system.drain()
        self.timeline.poll()
        self.narrator.flush()

    # --- one step ------------------------------------------------------------------------------

    def step(self, previous: datetime, *, upload: bool = True) -> None:
        """Everything that happens at the current simulated time, after the clock moved."""
        self.timeline.poll()
        self._deliveries()
        self._amazon_and_customers()
        self._devices_live_and_report(previous, upload)
        self.system.drain()
        self.timeline.poll()
        self.narrator.flush()

    def _deliveries(self) -> None:
        delivered = self.timeline.of(EventKind.ORDER_DELIVERED)
        for event in delivered[self._delivered_seen :]:
            device = self.devices.get(str(event.serial))
            if device is not None and event.slot_id in device.slots:
                device.deliver(event.slot_id, event.at)
        self._delivered_seen = len(delivered)

    def _amazon_and_customers(self) -> None:
        now, day = self.now(), (self.now() - self.start).total_seconds() / DAY
        self._toggle_faults(day)
        if not self._deregistered and day >= self.plan.deregister_day and DEREGISTERED in self.devices:
            self._deregistered = True
            self.note("Eve removes the printer from her Amazon account", DEREGISTERED)
            self.control.deregister_device(DEREGISTERED)
        for order in list(self.timeline.orders.values()):
            key = (order.serial, order.slot_id)
            if (
                key == CANCELLING
                and not self._cancelled_first
                and order.confirmed_at is not None
                and now - order.confirmed_at >= CANCEL_AFTER
            ):
                self._cancel_first_order(order.instance_id)
            elif (
                order.open
                and not order.is_test
                and order.shipped_at is None
                and order.confirmed_at is not None
                and now - order.confirmed_at >= SHIP_AFTER
                and not self.timeline.of(EventKind.DEREGISTERED, serial=order.serial)
            ):
                self.control.order_action(order.instance_id, "ship")
        self._resolution_flow(now)
        self._test_orders(now)

    def _toggle_faults(self, day: float) -> None:
        start, end = self.plan.fault_days
        wanted = start <= day < end
        if wanted == self._faults_on:
            return
        self._faults_on = wanted
        rate = self.plan.fault_rate if wanted else 0.0
        for offset, endpoint in enumerate(("replenish", "slotStatus")):
            self.control.set_fault(endpoint, rate, status=500, seed=self.plan.seed + offset)
        if wanted:
            self.note(f"faults on: {self.plan.fault_rate:.0%} of replenish and slotStatus calls answer 500")
        else:
            self.note("faults off")

    def _cancel_first_order(self, instance_id: str) -> None:
        serial, slot_id = CANCELLING
        self._cancelled_first = True
        self.note(f"Ben cancels order {short_id(instance_id)} on Amazon (within 24 h)", serial, slot_id)
        self.control.order_action(instance_id, "cancel")
        self.system.drain()
        self.timeline.poll()
        slot = next(
            s for s in self.client.get_device(self.devices[serial].device)["slots"] if s["slotId"] == slot_id
        )
        order = slot["order"]
        self.note(
            f"backend: order {order['state']}, cooldown until {order.get('cooldownUntil', '?')[:16]}",
            serial,
            slot_id,
        )

    def _resolution_flow(self, now: datetime) -> None:
        for cast in self.casts.values():
            customer = self.customers[cast.customer]
            if not customer.order_issue:
                continue
            for order in self.control.device(cast.serial)["orders"]:
                if order["state"] != "TROUBLED":
                    continue
                instance_id = order["instanceId"]
                if instance_id not in self._troubled_seen:
                    self._troubled_seen.add(instance_id)
                    self.note(
                        f"order {short_id(instance_id)} waits in Amazon's resolution flow (card declined)",
                        cast.serial,
                        order["slotId"],
                    )
                requested = datetime.fromisoformat(order["requestedAt"].replace("Z", "+00:00"))
                if now - requested >= RESOLVE_AFTER:
                    self.note(
                        f"{cast.customer} updates her card: order {short_id(instance_id)} resolved",
                        cast.serial,
                        order["slotId"],
                    )
                    self.control.set_order_issue(customer.customer_id, False)
                    customer.order_issue = False
                    self.control.order_action(instance_id, "resolve")

    def _test_orders(self, now: datetime) -> None:
        tests = [cast.serial for cast in self.casts.values() if cast.is_test]
        if self._test_done or not tests:
            return
        serial = tests[0]
        placed = [e for e in self.timeline.of(EventKind.ORDER_PLACED, serial=serial)]
        if len(placed) <= self._test_cancels or now - placed[self._test_cancels].at < TEST_ORDER_CANCEL_AFTER:
            return
        device = self.devices[serial].device
        if self._test_cancels == 0:
            self.client.cancel_test_orders(device)
        else:
            self.client.cancel_test_orders(device, placed[self._test_cancels].slot_id)
        self._test_cancels += 1
        if self._test_cancels >= 2:
            self._test_done = True
            for slot_id in device.slots:
                self.client.update_policy(device, slot_id, autoReorder=False)
            self.note("lab done with test orders: auto-reorder off", serial)

    def _devices_live_and_report(self, previous: datetime, upload: bool) -> None:
        now = self.now()
        for device in self.devices.values():
            if not device.active:
                continue
            for slot_id, at in device.live(previous, now, self.rng):
                self.timeline.record(
                    EventKind.REFILL,
                    at=at,
                    serial=device.serial,
                    slot_id=slot_id,
                    detail="customer loads the new package",
                )
            device.sample(now)
            readings = device.upload() if upload else []
            if not readings:
                continue
            key = idempotency_key(device.serial, now.isoformat())
            status, _ = self.client.post_usage(device.device, readings, key, expect=(202, 403))
            if status == 403:
                device.active = False  # deregistered: the device stops reporting

    # --- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        """Link, then step through the plan's days; a progress line at each simulated midnight."""
        self.link_everything()
        step = DAY / self.plan.readings_per_day
        per_upload = self.plan.readings_per_day // self.plan.uploads_per_day
        end = self.start + timedelta(days=self.plan.days)
        taken = 0
        while self.now() < end:
            previous = self.now()
            self.system.advance(step)
            taken += 1
            if (self.now() - self.start).total_seconds() % DAY == 0:
                self.timeline.poll()
                periods = self.timeline.linked_periods().values()
                linked = sum(1 for spans in periods if spans and spans[-1][1] is None)
                self.narrator.day_done(self.now(), linked)
            self.step(previous, upload=taken % per_upload == 0)
        self.narrator.flush()

    def expected_error(self, error: FunctionError) -> bool:
        """Errors the injected faults explain: a retryable DRS failure inside the fault window."""
        start, end = self.plan.fault_days
        day = (error.at - self.start).total_seconds() / DAY
        return start <= day <= end + 0.01 and error.error_type in ("DrsRetryableError", "ReportJobIncomplete")

    def no_slot_stuck(self) -> CheckResult:
        """Every slot in use got its next order when due; the backend holds no order Amazon closed."""
        tl = self.timeline
        backend = backend_orders(self.client, self.devices.values())
        tests = [cast.serial for cast in self.casts.values() if cast.is_test]
        world = self.control.configure_world()["counts"]
        return CheckResult(
            "no slot stuck: every slot in use gets its next order when due",
            check_no_slot_stuck(
                self.devices.values(), tl.amazon_orders, backend, tl.events, now=self.now(), skip=tests
            ),
            f"{world['lateParcels']} parcels late, {world['lostNotifications']} notifications lost, "
            f"{len([c for c in tl.calls if c['operation'] == 'getOrderInfo'])} getOrderInfo",
        )

    def coverage(self) -> CheckResult:
        """The story's cases did happen (a run where nothing was ordered would prove little).

        A case counts only if the run is long enough for it: the first orders need about three days
        (a day of readings to estimate consumption, then shipping), deliveries two weeks, and the
        deregistration and the faults come on the plan's days.
        """
        tl, days, casts = self.timeline, self.plan.days, self.casts.values()
        cases: list[tuple[str, bool, bool]] = [  # (case, due in this run, seen)
            ("orders placed", days >= 3, bool(tl.of(EventKind.ORDER_PLACED))),
            ("orders shipped", days >= 3, bool(tl.of(EventKind.ORDER_SHIPPED))),
            ("token refreshes", days >= 1, bool(tl.of(EventKind.TOKEN_REFRESH))),
            (
                "injected faults hit DRS calls",
                days > self.plan.fault_days[0] + 1,
                bool(tl.of(EventKind.FAULT)),
            ),
            (
                "a customer cancel",
                days >= 3 and CANCELLING[0] in self.casts,
                bool(tl.of(EventKind.ORDER_CANCELLED, serial=CANCELLING[0])),
            ),
            (
                "a deregistration on Amazon's side",
                days > self.plan.deregister_day and DEREGISTERED in self.casts,
                bool(tl.of(EventKind.DEREGISTERED, serial=DEREGISTERED)),
            ),
            (
                "an order through the resolution flow",
                days >= 3 and any(cast.order_issue for cast in casts),
                bool(self._troubled_seen),
            ),
            ("test orders cancelled", days >= 3 and any(c.is_test for c in casts), self._test_cancels > 0),
            ("deliveries loaded by the customers", days >= 14, bool(tl.of(EventKind.REFILL))),
        ]
        due = [(name, seen) for name, wanted, seen in cases if wanted]
        return CheckResult(
            "the scenario covered its cases",
            [f"never happened: {name}" for name, seen in due if not seen],
            ", ".join(name for name, seen in due if seen),
        )


# ------------------------------------------------------------------------------------ summary, charts


def avoidable_dry(scenario: Scenario) -> CheckResult:
    """No slot ran dry while an order placed on time would have prevented it (``check_no_avoidable_dry``:
    the simulator delivers ``DELIVERY_TIME`` after an order; a reading reaches the backend at the next
    upload, up to an upload interval late)."""
    from sandbox.simulator.records import DELIVERY_TIME

    tl = scenario.timeline
    dry = {
        (serial, slot_id): dry_periods(slot.history)
        for serial, device in scenario.devices.items()
        for slot_id, slot in device.slots.items()
    }
    slots = [slot for device in scenario.devices.values() for slot in device.slots.values()]
    hours = sum(dry_hours(slot.history) for slot in slots)
    tests = [serial for serial in tl.linked_periods() if tl.is_test_device(serial)]
    return CheckResult(
        "no slot ran dry while an order placed on time would have prevented it",
        check_no_avoidable_dry(
            dry,
            tl.events,
            tl.linked_periods(),
            delivery_time=DELIVERY_TIME,
            grace=timedelta(seconds=DAY / scenario.plan.uploads_per_day),
            test_devices=tests,
        ),
        f"{sum(len(spans) for spans in dry.values())} dry periods, {hours:.0f} stockout hours in all",
    )


def summary_rows(scenario: Scenario) -> list[dict[str, Any]]:
    """Per device and slot: what the timeline saw and what the backend answers now."""
    tl, rows = scenario.timeline, []
    for serial, device in scenario.devices.items():
        backend = scenario.client.get_device(device.device)
        slots = {slot["slotId"]: slot for slot in backend["slots"]}
        for slot_id, slot in device.slots.items():
            seen = slot_id
            placed = tl.of(EventKind.ORDER_PLACED, serial=serial, slot_id=seen)
            rows.append(
                {
                    "device": serial,
                    "model": device.device.model_id,
                    "slot": slot_id,
                    "orders": len(placed),
                    "cancelled": len(tl.of(EventKind.ORDER_CANCELLED, serial=serial, slot_id=seen)),
                    "shipped": len(tl.of(EventKind.ORDER_SHIPPED, serial=serial, slot_id=seen)),
                    "refills": len(slot.refills),
                    "reports": len(tl.of(EventKind.REPORT_SLOT, serial=serial, slot_id=seen)),
                    "dry": f"{dry_hours(slot.history):.0f}",
                    "level": f"{slot.level:.1f}/{slot.capacity:g} {slot.product.unit}",
                    "backend": f"{slots[slot_id]['remainingQuantity']:.1f}" if slot_id in slots else "-",
                    "order": slots[slot_id]["order"]["state"] if slot_id in slots else "-",
                    "status": backend["status"],
                }
            )
    return rows


def print_table(rows: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    headers = {
        "device": "device",
        "model": "model",
        "slot": "slot",
        "orders": "orders",
        "cancelled": "cancelled",
        "shipped": "shipped",
        "refills": "refills",
        "reports": "slotStatus",
        "dry": "dry h",
        "level": "device level",
        "backend": "backend level",
        "order": "order",
        "status": "device state",
    }
    widths = {key: max(len(title), *(len(str(row[key])) for row in rows)) for key, title in headers.items()}
    line = "  ".join(title.ljust(widths[key]) for key, title in headers.items())
    print(line, file=out)
    print("  ".join("-" * widths[key] for key in headers), file=out)
    for row in rows:
        print("  ".join(str(row[key]).ljust(widths[key]) for key in headers), file=out)
    out.flush()


def system_lines(system: EmbeddedSystem, timeline: Timeline) -> list[str]:
    """What the backend did: invocations per function, DRS/LWA calls, notifications, HTTP answers."""
    invocations = sorted(timeline.invocations.items(), key=lambda item: -item[1])
    calls = Counter(str(call["operation"]) for call in timeline.calls)
    faults = sum(1 for call in timeline.calls if call.get("fault"))
    statuses = system.http_statuses
    pumps = system.pump_stats()
    handled = sum(stats["processed"] for name, stats in pumps.items() if name.startswith("notifications"))
    return [
        "function invocations: " + ", ".join(f"{name} {count}" for name, count in invocations),
        "DRS and LWA calls: "
        + ", ".join(f"{name} {count}" for name, count in calls.most_common())
        + f" ({faults} answered by an injected fault)",
        f"DRS notifications: {len(timeline.notifications)} published, {handled} handled",
        "gateway answers: " + ", ".join(f"{code} x{count}" for code, count in sorted(statuses.items())),
    ]


_MARKERS = {
    "placed": ("#e67e22", "order placed"),
    "shipped": ("#2980b9", "shipped"),
    "delivered": ("#8e44ad", "delivered"),
    "refill": ("#27ae60", "refill loaded"),
    "cancelled": ("#c0392b", "cancelled"),
}


def _marker_shape(kind: str, x: float, y: float, colour: str) -> str:
    """The marker of ``kind`` centred on (``x``, ``y``); an order's triangle points down at the level."""
    if kind == "placed":
        corners = [(x - 6, y - 11), (x + 6, y - 11), (x, y - 1)]
    elif kind == "delivered":
        corners = [(x, y - 6), (x + 6, y), (x, y + 6), (x - 6, y)]
    elif kind == "shipped":
        return f'<rect x="{x - 4.5:.1f}" y="{y - 4.5:.1f}" width="9" height="9" fill="{colour}"/>'
    elif kind == "refill":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>'
    else:  # cancelled: a cross
        return (
            f'<path d="M{x - 5:.1f},{y - 5:.1f} L{x + 5:.1f},{y + 5:.1f} M{x - 5:.1f},{y + 5:.1f} '
            f'L{x + 5:.1f},{y - 5:.1f}" stroke="{colour}" stroke-width="2.5"/>'
        )
    path = " L".join(f"{cx:.1f},{cy:.1f}" for cx, cy in corners)
    return f'<path d="M{path} Z" fill="{colour}"/>'


def _level_at(history: Sequence[tuple[datetime, float]], at: datetime) -> float:
    """The level at ``at``, interpolated along the history (the last point before it if past the end)."""
    before = history[0]
    for point in history:
        if point[0] >= at:
            if point[0] == before[0]:
                return point[1]
            span = (point[0] - before[0]).total_seconds()
            share = (at - before[0]).total_seconds() / span
            return before[1] + (point[1] - before[1]) * share
        before = point
    return before[1]


def render_chart(
    title: str,
    unit: str,
    capacity: float,
    history: Sequence[tuple[datetime, float]],
    marks: Sequence[tuple[str, datetime]],
    start: datetime,
    end: datetime,
    dry: Sequence[tuple[datetime, datetime]] = (),
) -> str:
    """An SVG line chart of a slot's level over simulated days, with order/ship/refill markers and the
    ``dry`` periods (empty, nothing to load) shaded."""
    width, height = 760, 340
    left, right, top, bottom = 70, 20, 64, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    total = max((end - start).total_seconds(), 1.0)

    def x(at: datetime) -> float:
        return left + plot_w * min(max((at - start).total_seconds() / total, 0.0), 1.0)

    def y(level: float) -> float:
        return top + plot_h * (1 - min(max(level / capacity, 0.0), 1.05))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        ty = y(capacity * share)
        parts.append(f'<line x1="{left}" y1="{ty:.1f}" x2="{width - right}" y2="{ty:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 8}" y="{ty + 4:.1f}" text-anchor="end">{capacity * share:g}</text>')
    days = round(total / DAY)
    every = max(1, days // 10)
    for day in range(0, days + 1, every):
        tx = x(start + timedelta(days=day))
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top + plot_h}" x2="{tx:.1f}" y2="{top + plot_h + 5}" stroke="#333"/>'
        )
        parts.append(f'<text x="{tx:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{day}</text>')
    parts += [
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#333"/>',
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" text-anchor="middle">simulated day</text>',
        f'<text x="18" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 18 {top + plot_h / 2:.1f})">remaining ({escape(unit)})</text>',
    ]
    for dry_start, dry_end in dry:
        parts.append(
            f'<rect x="{x(dry_start):.1f}" y="{top}" width="{max(x(dry_end) - x(dry_start), 1.0):.1f}" '
            f'height="{plot_h}" fill="{DRY_SHADE}"><title>dry</title></rect>'
        )
    parts.append(f'<rect x="{left}" y="40" width="14" height="10" fill="{DRY_SHADE}" stroke="#e6b0aa"/>')
    parts.append(f'<text x="{left + 18}" y="50">dry</text>')
    points = " ".join(f"{x(at):.1f},{y(level):.1f}" for at, level in history)
    parts.append(f'<polyline points="{points}" fill="none" stroke="#34495e" stroke-width="2"/>')
    for kind, at in marks:
        colour = _MARKERS[kind][0]
        parts.append(_marker_shape(kind, x(at), y(_level_at(history, at)), colour))
    legend_x = width - right - 5 * 110
    for i, (kind, (colour, label)) in enumerate(_MARKERS.items()):
        lx = legend_x + i * 110
        parts.append(_marker_shape(kind, lx + 6, 46, colour))
        parts.append(f'<text x="{lx + 16}" y="50">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_charts(scenario: Scenario, output_dir: Path) -> list[Path]:
    """One SVG per slot, plus an index page showing them all."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tl, end, paths = scenario.timeline, scenario.now(), []
    kinds = {
        EventKind.ORDER_PLACED: "placed",
        EventKind.ORDER_SHIPPED: "shipped",
        EventKind.ORDER_DELIVERED: "delivered",
        EventKind.ORDER_CANCELLED: "cancelled",
    }
    for serial, device in scenario.devices.items():
        for slot_id, slot in device.slots.items():
            marks = [(kinds[e.kind], e.at) for e in tl.of(*kinds, serial=serial, slot_id=slot_id)]
            marks += [("refill", at) for at in slot.refills]
            title = f"{serial} / {slot_id} ({device.device.model_id}, {slot.product.asin})"
            svg = render_chart(
                title,
                slot.product.unit,
                slot.capacity,
                slot.history,
                marks,
                scenario.start,
                end,
                dry=dry_periods(slot.history),
            )
            path = output_dir / f"{serial}-{slot_id}.svg"
            path.write_text(svg, encoding="utf-8")
            paths.append(path)
    index = output_dir / "index.html"
    images = "\n".join(f'<p><img src="{p.name}" alt="{escape(p.stem)}"></p>' for p in paths)
    index.write_text(f"<!doctype html>\n<title>DRS demo</title>\n<h1>Slot levels</h1>\n{images}\n", "utf-8")
    return paths


# ------------------------------------------------------------------------------------ entry points


def run_scenario(
    system: EmbeddedSystem, plan: DemoPlan, *, out: TextIO, output_dir: Path | None = None
) -> DemoResult:
    """Play ``plan`` on a started, stepped ``system``; print as it goes; check the invariants."""
    started = time.perf_counter()
    scenario = Scenario(system, plan, out)
    scenario.run()
    narrator = scenario.narrator
    checks = check_system(system, scenario.timeline, expected_error=scenario.expected_error)
    checks.append(scenario.coverage())
    checks.append(avoidable_dry(scenario))
    checks.append(scenario.no_slot_stuck())
    rows = summary_rows(scenario)
    result = DemoResult(checks, scenario.timeline, scenario.devices, rows)
    narrator.say("\n== summary")
    print_table(rows, out)
    narrator.say("\n== the system")
    for line in system_lines(system, scenario.timeline):
        narrator.say(f"   {line}")
    if output_dir is not None:
        result.charts = write_charts(scenario, output_dir)
        narrator.say(
            f"\n== charts ({len(result.charts)}, one per slot; all on one page: {output_dir / 'index.html'})"
        )
        for path in result.charts:
            narrator.say(f"   {path}")
    narrator.say("\n== checks")
    for check in checks:
        narrator.say(
            f"  [{'ok' if check.ok else 'FAILED'}] {check.name}"
            + (f"  ({check.detail})" if check.detail else "")
        )
        for failure in check.failures:
            narrator.say(f"         - {failure}")
    result.wall_seconds = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, start the embedded system, play the scenario; 0 if every check held."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, help="simulated days (default 31; 8 with --short)")
    parser.add_argument("--readings-per-day", type=int, default=DemoPlan.readings_per_day, help="default 4")
    parser.add_argument("--uploads-per-day", type=int, default=DemoPlan.uploads_per_day, help="default 2")
    parser.add_argument("--seed", type=int, default=DemoPlan.seed, help="consumption noise and fault draws")
    parser.add_argument("--short", action="store_true", help="the test suite's 8-day, 4-device version")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where charts and logs go")
    parser.add_argument("--gateway-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--simulator-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--no-cache", action="store_true", help="synthesize the template even if cached")
    parser.add_argument("--template", type=Path, help="a synthesized template (JSON) instead of the app's")
    args = parser.parse_args(argv)
    if 24 % args.readings_per_day or args.readings_per_day % args.uploads_per_day:
        parser.error("--readings-per-day must divide 24, and --uploads-per-day the readings per day")
    plan = short_plan() if args.short else DemoPlan()
    plan = replace(
        plan,
        days=args.days or plan.days,
        seed=args.seed,
        readings_per_day=args.readings_per_day,
        uploads_per_day=args.uploads_per_day,
    )
    out = sys.stdout
    args.output.mkdir(parents=True, exist_ok=True)
    log_path = args.output / "functions.log"
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        # The functions log JSON (and Powertools prints EMF metrics) to stdout, as in Lambda: into the
        # log file, so the terminal shows the story. The sandbox's own notes go there too.
        logging.basicConfig(
            stream=log, level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
        logging.getLogger("sandbox").setLevel(logging.INFO)
        from sandbox.system import EmbeddedSystem
        from sandbox.template import load_sandbox_template

        print(
            "== starting the embedded system (the CDK template is synthesized once, then cached)",
            file=out,
            flush=True,
        )
        given = json.loads(args.template.read_text()) if args.template else None
        template = load_sandbox_template(given, use_cache=not args.no_cache)
        system = EmbeddedSystem(
            template=template,
            gateway_port=args.gateway_port,
            simulator_port=args.simulator_port,
            # Injected 500s are retried by the DRS client with wall-clock backoff: keep the budget short.
            environment={"HTTP_MAX_TOTAL_SECONDS": "2"},
        )
        with system:
            print(
                f"   gateway {system.gateway_url}, simulator {system.simulator_url}, local AWS "
                f"{system.aws.endpoint} (ready in {time.perf_counter() - started:.1f} s)\n"
                f"   function logs: {log_path}",
                file=out,
                flush=True,
            )
            result = run_scenario(system, plan, out=out, output_dir=args.output)
    total = time.perf_counter() - started
    if result.failures:
        print(f"\nFAILED: {len(result.failures)} check failure(s) in {total:.0f} s", file=out, flush=True)
        return 1
    print(f"\nall checks held; {plan.days} simulated days in {total:.0f} s", file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
