"""Building blocks for scenarios on the embedded system: the demo, its test, the soak.

Everything here talks to the product the way the outside world does: the companion app and the
devices call the local gateway over HTTP (``SandboxClient``), the customer and Amazon act through the
simulator's ``/__sim/`` routes (``SimulatorControl``). What happened is read back from the simulator's
calls and notifications logs and from the system's invocation callback (``Timeline``), and judged by
the invariant checks at the end (``check_*``: each returns the list of its failures, empty when it
held). ``SimulatedDevice`` plays a device's physical life: consumption with noise, packages arriving,
the customer loading a new one when the slot runs dry, and the readings it reports.

Nothing here needs a particular scenario: ``sandbox.demo`` composes these pieces into one, and the soak
can compose them into another, against an ``EmbeddedSystem`` or against ``make sandbox``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Protocol

import requests

from drs_core.clock import Clock, parse_iso, to_iso
from sandbox.simulator.control import SimulatorControl, s256_challenge

if TYPE_CHECKING:  # the system is only needed by the helpers that inspect one
    from sandbox.functions import Invocation
    from sandbox.system import EmbeddedSystem

# What DRS answers to a replenish that placed an order, and to one finding an order open already.
PLACED_DETAIL_CODES = frozenset({"STANDARD_ORDER_PLACED", "TEST_ORDER_PLACED"})
ORDER_IN_PROGRESS = "ORDER_INPROGRESS"
# The backend's cooldown after a customer cancel (DRS CX guideline; domain/order_lifecycle.py).
CUSTOMER_CANCEL_COOLDOWN = timedelta(days=5)
NOTIFICATIONS_PUMP = "notifications<-sqs"


# ------------------------------------------------------------------------------------ the HTTP API


class ApiError(RuntimeError):
    """The gateway answered something other than what the caller expected (no token in the text)."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} answered {status}: {body[:300]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Product:
    """What a customer picks for a slot on Amazon: an ASIN, and the slot's full quantity in its unit
    (what the simulated device holds when full: the model catalog's, ``drs_core/model_catalog.json``).

    ``packs``: Amazon describes the product as that many packs (``productInfo`` ``{quantity: packs,
    unit: "count"}``, as DRS does); None describes it by the slot's quantity and unit instead.
    """

    asin: str
    quantity: float
    unit: str
    packs: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The product as the customer's consent on Amazon names it (``productInfo``)."""
        if self.packs is not None:
            return {"asin": self.asin, "quantity": self.packs, "unit": "count"}
        return {"asin": self.asin, "quantity": self.quantity, "unit": self.unit}


@dataclass(frozen=True)
class DeviceModel:
    """A device model of the maker: its id and the product each slot takes by default."""

    model_id: str
    slots: Mapping[str, Product]
    description: str = ""


@dataclass
class Customer:
    """An Amazon customer, and the LWA access token their companion app holds (never printed)."""

    name: str
    customer_id: str
    app_token: str = field(repr=False)
    order_issue: bool = False

    @classmethod
    def create(cls, control: SimulatorControl, name: str, *, order_issue: bool = False) -> Customer:
        """``POST /__sim/customers``."""
        created = control.create_customer(name=name, order_issue=order_issue)
        return cls(name, created["customerId"], created["appAccessToken"], order_issue)


@dataclass
class LinkedDevice:
    """A device the companion app linked: its serial, owner and device credential (never printed)."""

    serial: str
    model_id: str
    customer: Customer
    device_token: str = field(repr=False)
    slots: dict[str, Product]
    is_test: bool = False
    linked_at: datetime | None = None


def remaining(slot_id: str, quantity: float, at: datetime) -> dict[str, Any]:
    """An absolute reading: ``quantity`` is what the slot holds at ``at``."""
    return {"slotId": slot_id, "observedAt": to_iso(at), "remainingQuantity": round(quantity, 4)}


def consumed(slot_id: str, quantity: float, at: datetime) -> dict[str, Any]:
    """A delta reading: ``quantity`` was used since the previous reading."""
    return {"slotId": slot_id, "observedAt": to_iso(at), "consumedQuantity": round(quantity, 4)}


def refilled(slot_id: str, quantity: float, at: datetime) -> dict[str, Any]:
    """The customer loaded ``quantity`` of new stock into the slot."""
    return {"slotId": slot_id, "observedAt": to_iso(at), "refilledQuantity": round(quantity, 4)}


class SandboxClient:
    """The companion app and the devices, calling the product's HTTP API through the local gateway.

    With a ``timeline``, what the client did (link, unlink, policy, test-order cancels, readings) is
    recorded there at the simulated time ``control`` reports.
    """

    def __init__(
        self,
        gateway_url: str,
        control: SimulatorControl,
        *,
        timeline: Timeline | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.control = control
        self.timeline = timeline
        self._timeout = timeout
        self._http = requests.Session()
        # Pairing codes of the devices this client provisioned, by serial (a re-link needs it again).
        self.pairing_codes: dict[str, str] = {}

    @classmethod
    def for_system(cls, system: EmbeddedSystem, *, timeline: Timeline | None = None) -> SandboxClient:
        """A client of a started ``EmbeddedSystem``."""
        return cls(system.gateway_url, system.control, timeline=timeline)

    def request(
        self,
        method: str,
        path: str,
        *,
        authorization: str | None = None,
        expect: int | Iterable[int] = 200,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One API call → (status, parsed JSON or None); ``ApiError`` unless the status is expected."""
        sent = dict(headers or {})
        if authorization is not None:
            sent["Authorization"] = authorization
        response = self._http.request(
            method, self.gateway_url + path, json=body, headers=sent, timeout=self._timeout
        )
        wanted = {expect} if isinstance(expect, int) else set(expect)
        if response.status_code not in wanted:
            raise ApiError(method, path, response.status_code, response.text)
        return response.status_code, (response.json() if response.content else None)

    # --- the companion app ---------------------------------------------------------------------

    def create_customer(self, name: str, *, order_issue: bool = False) -> Customer:
        """An Amazon customer with the app's LWA token (``POST /__sim/customers``)."""
        return Customer.create(self.control, name, order_issue=order_issue)

    def provision_device(self, serial: str, model_id: str) -> str:
        """The device leaves the factory (``POST /__sandbox/devices``): its pairing code, remembered."""
        _, answer = self.request(
            "POST", "/__sandbox/devices", expect=201, body={"serial": serial, "modelId": model_id}
        )
        self.pairing_codes[serial] = answer["pairingCode"]
        return str(answer["pairingCode"])

    def pairing_code(self, serial: str, model_id: str) -> str:
        """The device's pairing code, as the app reads it off the device: provisioned on first use."""
        return self.pairing_codes.get(serial) or self.provision_device(serial, model_id)

    def link_device(
        self,
        customer: Customer,
        model_id: str,
        serial: str,
        slots: Mapping[str, Product | Mapping[str, Any] | None],
        *,
        is_test: bool = False,
        pkce: bool = False,
    ) -> LinkedDevice:
        """The customer consents (``/__sim/authorize``), the app links (``POST …/registration``) with
        the pairing code it read from the device (provisioned here on first use).

        ``pkce`` links like a mobile app: a code challenge at consent, the verifier at linking.
        """
        products = {
            slot_id: _product(value) if value is not None else None for slot_id, value in slots.items()
        }
        verifier = secrets.token_urlsafe(48) if pkce else None
        code, redirect_uri = self.control.authorize(
            customer.customer_id,
            model_id=model_id,
            serial=serial,
            slots={slot_id: p.to_json() if p else None for slot_id, p in products.items()},
            is_test_device=is_test,
            code_challenge=s256_challenge(verifier) if verifier else None,
        )
        body: dict[str, Any] = {
            "modelId": model_id,
            "pairingCode": self.pairing_code(serial, model_id),
            "authorizationCode": code,
            "redirectUri": redirect_uri,
        }
        if verifier:
            body["codeVerifier"] = verifier
        if is_test:
            body["isTestDevice"] = True
        _, answer = self.request(
            "POST",
            f"/v1/devices/{serial}/registration",
            authorization=f"Bearer {customer.app_token}",
            expect=201,
            body=body,
        )
        now = self.timeline.now() if self.timeline is not None else parse_iso(self.control.now())
        device = LinkedDevice(
            serial=serial,
            model_id=model_id,
            customer=customer,
            device_token=answer["deviceToken"],
            slots={slot_id: p for slot_id, p in products.items() if p is not None},
            is_test=is_test,
            linked_at=now,
        )
        self._record(
            EventKind.LINKED,
            now,
            serial,
            detail=f"linked by {customer.name} ({model_id}{', test device' if is_test else ''}"
            f"{', PKCE' if pkce else ''})",
            customer=customer.name,
            is_test=is_test,
        )
        return device

    def get_device(self, device: LinkedDevice) -> dict[str, Any]:
        """``GET /v1/devices/{serial}`` as the owner's app."""
        return self._owner_call("GET", device, f"/v1/devices/{device.serial}")

    def list_devices(self, customer: Customer) -> list[dict[str, Any]]:
        """``GET /v1/devices``."""
        _, answer = self.request("GET", "/v1/devices", authorization=f"Bearer {customer.app_token}")
        return list(answer["devices"])

    def update_policy(self, device: LinkedDevice, slot_id: str, **fields: Any) -> dict[str, Any]:
        """``PUT …/slots/{slotId}/policy`` with the API's names (``thresholdFraction``, ``autoReorder`` …)."""
        answer = self._owner_call(
            "PUT", device, f"/v1/devices/{device.serial}/slots/{slot_id}/policy", body=fields
        )
        changes = ", ".join(f"{name}={value}" for name, value in sorted(fields.items()))
        self._record(EventKind.POLICY_CHANGED, None, device.serial, slot_id, f"policy changed: {changes}")
        return answer

    def cancel_test_orders(self, device: LinkedDevice, slot_id: str | None = None) -> dict[str, Any]:
        """``DELETE …/test-orders[/{slotId}]`` (test devices only)."""
        path = f"/v1/devices/{device.serial}/test-orders" + (f"/{slot_id}" if slot_id else "")
        answer = self._owner_call("DELETE", device, path)
        which = f"slot {slot_id}" if slot_id else "every slot"
        self._record(
            EventKind.TEST_ORDERS_CANCELLED,
            None,
            device.serial,
            slot_id,
            f"app cancelled the test orders of {which}",
        )
        return answer

    def unlink(self, device: LinkedDevice) -> None:
        """``DELETE …/registration``: the customer unlinks the device in the app."""
        self._owner_call("DELETE", device, f"/v1/devices/{device.serial}/registration", expect=204)
        self._record(EventKind.UNLINKED, None, device.serial, detail="unlinked in the app")

    def _owner_call(
        self, method: str, device: LinkedDevice, path: str, *, expect: int = 200, body: Any = None
    ) -> Any:
        _, answer = self.request(
            method, path, authorization=f"Bearer {device.customer.app_token}", expect=expect, body=body
        )
        return answer

    # --- the device ----------------------------------------------------------------------------

    def post_usage(
        self,
        device: LinkedDevice,
        readings: Sequence[Mapping[str, Any]],
        idempotency_key: str | None = None,
        *,
        expect: int | Iterable[int] = 202,
    ) -> tuple[int, Any]:
        """``POST …/usage`` with the device credential → (status, answer)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        status, answer = self.request(
            "POST",
            f"/v1/devices/{device.serial}/usage",
            authorization=f"Device {device.device_token}",
            expect=expect,
            body={"readings": list(readings)},
            headers=headers,
        )
        if status == 202:
            self._record(
                EventKind.USAGE,
                None,
                device.serial,
                detail=f"{len(readings)} reading(s)",
                readings=len(readings),
            )
        else:
            self._record(
                EventKind.USAGE_REFUSED,
                None,
                device.serial,
                detail=f"usage refused by the gateway ({status})",
            )
        return status, answer

    def _record(
        self,
        kind: EventKind,
        at: datetime | None,
        serial: str | None,
        slot_id: str | None = None,
        detail: str = "",
        **data: Any,
    ) -> None:
        if self.timeline is not None:
            when = at or self.timeline.now()
            self.timeline.record(kind, at=when, serial=serial, slot_id=slot_id, detail=detail, **data)


def _product(value: Product | Mapping[str, Any]) -> Product:
    if isinstance(value, Product):
        return value
    return Product(str(value["asin"]), float(value["quantity"]), str(value["unit"]))


# ------------------------------------------------------------------------------------ a device's life


@dataclass
class SimulatedSlot:
    """One slot's physical contents over time, and the packages waiting to be loaded."""

    slot_id: str
    product: Product
    level: float
    daily_use: float
    noise: float = 0.3
    packages: list[datetime] = field(default_factory=list)  # arrival times of unloaded packages
    history: list[tuple[datetime, float]] = field(default_factory=list)
    refills: list[datetime] = field(default_factory=list)
    measured: bool = False  # the device has reported an absolute level once
    unreported_use: float = 0.0

    @property
    def capacity(self) -> float:
        return float(self.product.quantity)


class SimulatedDevice:
    """A device's physical life: slots that empty with noisy use, and the readings it reports.

    ``mode`` is how it measures: ``"remaining"`` (a level sensor: absolute readings) or ``"consumed"``
    (a flow meter or page counter: deltas since the last reading). Either way its first reading of a
    slot is absolute, since the backend knows nothing of the slot's contents before it. The customer
    loads a delivered package when the slot runs dry (the reading then says so, and reports the
    refill), or as soon as the package arrives if the slot is dry already.
    """

    def __init__(
        self,
        device: LinkedDevice,
        *,
        levels: Mapping[str, float],
        daily_use: Mapping[str, float],
        mode: str = "remaining",
        noise: float = 0.3,
        start: datetime,
    ) -> None:
        if mode not in ("remaining", "consumed"):
            raise ValueError("mode is 'remaining' or 'consumed'")
        self.device = device
        self.mode = mode
        self.active = True
        self.slots: dict[str, SimulatedSlot] = {}
        for slot_id, product in device.slots.items():
            level = float(product.quantity) * levels[slot_id]
            slot = SimulatedSlot(slot_id, product, level, daily_use[slot_id], noise)
            slot.history.append((start, level))
            self.slots[slot_id] = slot
        self._pending: list[dict[str, Any]] = []

    @property
    def serial(self) -> str:
        return self.device.serial

    def deliver(self, slot_id: str, at: datetime) -> None:
        """A package for ``slot_id`` arrived at ``at`` (the customer has it; not loaded yet)."""
        self.slots[slot_id].packages.append(at)

    def live(self, start: datetime, end: datetime, rng: random.Random) -> list[tuple[str, datetime]]:
        """Use the slots from ``start`` to ``end``; return the refills made, as (slot id, time)."""
        made: list[tuple[str, datetime]] = []
        for slot in self.slots.values():
            factor = max(0.0, rng.gauss(1.0, slot.noise))
            per_second = slot.daily_use * factor / 86400
            cursor = start
            while cursor < end:
                if slot.level <= 0:
                    arrival = min((p for p in slot.packages), default=None)
                    if arrival is None or arrival > end:
                        break  # dry, nothing to load: the device idles
                    cursor = max(cursor, arrival)
                    self._load(slot, cursor)
                    made.append((slot.slot_id, cursor))
                    continue
                if per_second <= 0:
                    break
                dry_at = cursor + timedelta(seconds=slot.level / per_second)
                if dry_at >= end:
                    used = per_second * (end - cursor).total_seconds()
                    slot.level -= used
                    slot.unreported_use += used
                    break
                slot.unreported_use += slot.level
                slot.level = 0.0
                slot.history.append((dry_at, 0.0))
                cursor = dry_at
            slot.level = max(0.0, slot.level)
            slot.history.append((end, slot.level))
        return made

    def _load(self, slot: SimulatedSlot, at: datetime) -> None:
        """The customer puts a new package in a dry slot: the device reports empty, then the refill."""
        slot.packages.remove(min(slot.packages))
        if slot.measured:
            if self.mode == "consumed" and slot.unreported_use > 0:
                self._pending.append(consumed(slot.slot_id, slot.unreported_use, at))
            elif self.mode == "remaining":
                self._pending.append(remaining(slot.slot_id, 0.0, at))
            self._pending.append(refilled(slot.slot_id, slot.capacity, at + timedelta(seconds=1)))
        slot.unreported_use = 0.0
        slot.level = slot.capacity
        slot.history.append((at, 0.0))
        slot.history.append((at + timedelta(seconds=1), slot.level))
        slot.refills.append(at)

    def sample(self, now: datetime) -> None:
        """Take a reading of every slot at ``now`` into the device's buffer (sent by ``upload``). A slot
        loaded at this very instant has said so already: a second, different reading of it at the same
        time would make the request ambiguous (the API refuses it: ``CONFLICTING_READINGS``)."""
        reported_now = {r["slotId"] for r in self._pending if r["observedAt"] == to_iso(now)}
        for slot in self.slots.values():
            if slot.slot_id in reported_now:
                continue
            if not slot.measured or self.mode == "remaining":
                self._pending.append(remaining(slot.slot_id, slot.level, now))
                slot.measured = True
            elif slot.unreported_use > 1e-6:
                self._pending.append(consumed(slot.slot_id, slot.unreported_use, now))
            slot.unreported_use = 0.0

    def upload(self) -> list[dict[str, Any]]:
        """The buffered readings (refills and samples, oldest first), emptying the buffer."""
        readings, self._pending = self._pending, []
        return readings

    def readings(self, now: datetime) -> list[dict[str, Any]]:
        """Sample at ``now`` and upload at once: what a device reporting every reading sends."""
        self.sample(now)
        return self.upload()


# ------------------------------------------------------------------------------------ the timeline


class EventKind(StrEnum):
    # the app and the devices (recorded by SandboxClient)
    LINKED = "linked"
    UNLINKED = "unlinked"
    USAGE = "usage"
    USAGE_REFUSED = "usage refused"
    POLICY_CHANGED = "policy changed"
    TEST_ORDERS_CANCELLED = "test orders cancelled"
    # the scenario (customer, Amazon, operator)
    REFILL = "refill"
    NOTE = "note"
    # DRS calls (the simulator's calls log)
    ORDER_PLACED = "order placed"
    ORDER_ADOPTED = "order in progress"
    REPORT_DEVICE = "deviceStatus"
    REPORT_SLOT = "slotStatus"
    TOKEN_EXCHANGE = "token exchange"
    TOKEN_REFRESH = "token refresh"
    REAUTH = "reauth"
    FAULT = "fault"
    DRS_REFUSED = "drs refused"
    # DRS notifications (the simulator's notifications log)
    ORDER_CONFIRMED = "OrderPlaced"
    ORDER_SHIPPED = "ItemShipped"
    ORDER_CANCELLED = "OrderCancelled"
    SUBSCRIPTION_CHANGED = "SubscriptionChanged"
    DEVICE_REGISTERED = "DeviceRegistered"
    DEREGISTERED = "DeviceDeregistered"
    # derived: Amazon delivered an order (its estimated delivery date passed, on the simulated clock)
    ORDER_DELIVERED = "delivered"
    # the system's invocation callback
    FUNCTION_ERROR = "function error"


@dataclass(frozen=True)
class Event:
    """One thing that happened, at its simulated time."""

    at: datetime
    kind: EventKind
    serial: str | None = None
    slot_id: str | None = None
    detail: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """``serial/slot`` (or what of it is known)."""
        return "/".join(part for part in (self.serial, self.slot_id) if part)


@dataclass
class OrderRecord:
    """An order as the notifications describe it."""

    instance_id: str
    serial: str
    slot_id: str
    is_test: bool
    confirmed_at: datetime | None = None  # OrderPlaced (after resolution, for a troubled order)
    eta: datetime | None = None
    shipped_at: datetime | None = None
    cancelled_at: datetime | None = None
    delivered_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.cancelled_at is None and self.delivered_at is None


@dataclass(frozen=True)
class FunctionError:
    """An invocation that raised, seen by the system's invocation callback."""

    function: str
    at: datetime
    error_type: str
    message: str
    request_id: str


class SimulatorLogs(Protocol):
    """Where the calls and notifications logs come from: ``SimulatorControl`` (``GET /__sim/calls`` and
    ``/__sim/notifications``) or, in the same process, the ``Simulator`` itself (no JSON round trip)."""

    def calls(self) -> list[dict[str, Any]]: ...

    def notifications(self) -> list[dict[str, Any]]: ...

    def orders(self) -> list[dict[str, Any]]: ...


class Timeline:
    """What happened, in simulated time, from the simulator's logs and the system's callbacks.

    ``poll()`` reads the calls and notifications logs past what it has seen, takes deliveries (and
    cancels whose notification the world lost) from what Amazon knows of its orders (the simulator's
    orders: a parcel may come late or early), and emits the new events in time order (to
    ``on_event`` too). ``record()`` adds the scenario's own events (emitted at once).
    """

    def __init__(
        self,
        control: SimulatorControl,
        *,
        clock: Clock | None = None,
        on_event: Callable[[Event], None] | None = None,
        logs: SimulatorLogs | None = None,
    ) -> None:
        self.control = control
        self.logs: SimulatorLogs = logs or control
        self.clock = clock
        self.on_event = on_event
        self.events: list[Event] = []
        self.calls: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.orders: dict[str, OrderRecord] = {}
        self.amazon_orders: list[dict[str, Any]] = []  # the simulator's orders, as of the last poll
        self.function_errors: list[FunctionError] = []
        self.invocations: Counter[str] = Counter()
        self._test_devices: set[str] = set()
        self._link_times: dict[str, set[datetime]] = defaultdict(set)
        self._deregistered_at: dict[str, datetime] = {}
        self._pending_errors: list[FunctionError] = []
        self._lock = threading.Lock()

    def attach(self, system: EmbeddedSystem) -> Timeline:
        """Follow ``system``'s invocations (function errors) on its clock; read its simulator's logs
        in-process (the same records ``GET /__sim/calls`` serves, without re-reading them as JSON)."""
        self.clock = system.clock
        self.logs = system.simulator.simulator  # type: ignore[union-attr]
        system.on_invocation(self._on_invocation)
        return self

    def _on_invocation(self, outcome: Invocation) -> None:
        # Runs in whichever thread invoked (the gateway's, a pump's): kept until the next poll.
        with self._lock:
            self.invocations[outcome.function] += 1
            if outcome.error is not None:
                error = FunctionError(
                    function=outcome.function,
                    at=self.now(),
                    error_type=type(outcome.error).__name__,
                    message=str(outcome.error)[:200],
                    request_id=outcome.request_id,
                )
                self.function_errors.append(error)
                self._pending_errors.append(error)

    def now(self) -> datetime:
        """The simulated time: the attached system's clock, else the simulator's (one HTTP call)."""
        if self.clock is not None:
            return self.clock.now()
        return parse_iso(self.control.now())

    def record(
        self,
        kind: EventKind,
        *,
        at: datetime | None = None,
        serial: str | None = None,
        slot_id: str | None = None,
        detail: str = "",
        **data: Any,
    ) -> Event:
        """Add one of the scenario's own events (emitted at once)."""
        event = Event(at or self.now(), kind, serial, slot_id, detail, dict(data))
        if kind is EventKind.LINKED:
            self._link_times[serial or ""].add(event.at)
            if data.get("is_test"):
                self._test_devices.add(serial or "")
        self._emit([event])
        return event

    def is_test_device(self, serial: str | None) -> bool:
        return serial in self._test_devices

    def poll(self) -> list[Event]:
        """Read what happened since the last poll; emit it as events, in time order."""
        new: list[tuple[datetime, int, Event]] = []
        calls = self.logs.calls()
        for call in calls[len(self.calls) :]:
            event = self._call_event(call)
            if event is not None:
                new.append((event.at, 0, event))
        self.calls = calls
        notes = self.logs.notifications()
        for note in notes[len(self.notifications) :]:
            for event in self._notification_events(note):
                new.append((event.at, 1, event))
        self.notifications = notes
        self.amazon_orders = self.logs.orders()
        for known in self.amazon_orders:
            new.extend((event.at, 2, event) for event in self._amazon_order_events(known))
        with self._lock:
            errors, self._pending_errors = self._pending_errors, []
        for error in errors:
            detail = f"{error.function} raised {error.error_type}: {error.message}"
            new.append((error.at, 3, Event(error.at, EventKind.FUNCTION_ERROR, detail=detail)))
        events = [event for _, _, event in sorted(new, key=lambda item: (item[0], item[1]))]
        self._emit(events)
        return events

    def _emit(self, events: list[Event]) -> None:
        self.events.extend(events)
        if self.on_event is not None:
            for event in events:
                self.on_event(event)

    def _call_event(self, call: Mapping[str, Any]) -> Event | None:
        at, operation, status = parse_iso(str(call["at"])), str(call["operation"]), int(call["status"])
        serial, slot_id = call.get("serial"), call.get("slotId")
        if call.get("fault"):
            return Event(
                at, EventKind.FAULT, serial, slot_id, f"DRS fault injected: {operation} -> {status}", call
            )
        if operation == "token" and serial:
            if status >= 400:
                return Event(
                    at, EventKind.REAUTH, serial, None, "LWA refused the refresh token: reauth needed", call
                )
            if at in self._link_times.get(serial, set()):
                return Event(at, EventKind.TOKEN_EXCHANGE, serial, None, "authorization code exchanged", call)
            return Event(
                at,
                EventKind.TOKEN_REFRESH,
                serial,
                None,
                "access token expired (1 h) -> new one from the refresh token",
                call,
            )
        if status >= 400:
            if operation in ("token", "tokeninfo"):
                return None  # the companion authorizer checking an app token: not a DRS call
            return Event(
                at, EventKind.DRS_REFUSED, serial, slot_id, f"DRS answered {status} to {operation}", call
            )
        if operation == "replenish":
            detail = str(call.get("detailCode"))
            if detail in PLACED_DETAIL_CODES:
                return Event(
                    at, EventKind.ORDER_PLACED, serial, slot_id, f"order placed: replenish -> {detail}", call
                )
            return Event(
                at, EventKind.ORDER_ADOPTED, serial, slot_id, f"replenish -> {detail}: adopted", call
            )
        if operation == "deviceStatus":
            return Event(at, EventKind.REPORT_DEVICE, serial, None, "deviceStatus reported", call)
        if operation == "slotStatus":
            return Event(at, EventKind.REPORT_SLOT, serial, slot_id, "slotStatus reported", call)
        return None

    def _notification_events(self, note: Mapping[str, Any]) -> list[Event]:
        message = json.loads(str(note["envelope"]["Message"]))
        info = message.get("notificationInfo", {})
        kind = str(info.get("notificationType", ""))
        serial = message.get("deviceInfo", {}).get("deviceIdentifier", {}).get("serialNumber")
        at = parse_iso(str(info.get("notificationTime") or note["at"]))
        data = {"notificationId": info.get("notificationId"), "seq": note.get("seq")}
        order_info = message.get("orderInfo") or {}
        instance_id, slot_id = order_info.get("instanceId"), order_info.get("slotId")
        order = self._order(instance_id, serial, slot_id) if instance_id else None
        if kind == "OrderPlacedNotification" and order is not None:
            products = order_info.get("productInfo") or [{}]
            eta_text = order_info.get("estimatedDeliveryDate") or products[0].get("estimatedDeliveryDate")
            order.confirmed_at = order.confirmed_at or at
            order.eta = parse_iso(eta_text) if eta_text else order.eta
            eta = f", delivery by {to_iso(order.eta)[:16]}" if order.eta else ""
            text = f"OrderPlaced: order {short_id(instance_id)}{eta}"
            return [
                Event(
                    at, EventKind.ORDER_CONFIRMED, serial, slot_id, text, {**data, "instanceId": instance_id}
                )
            ]
        if kind == "ItemShippedNotification" and order is not None:
            order.shipped_at = order.shipped_at or at
            text = f"ItemShipped: order {short_id(instance_id)} is on its way"
            return [
                Event(at, EventKind.ORDER_SHIPPED, serial, slot_id, text, {**data, "instanceId": instance_id})
            ]
        if kind == "OrderCancelledNotification" and order is not None:
            order.cancelled_at = order.cancelled_at or at
            text = f"OrderCancelled: order {short_id(instance_id)}"
            return [
                Event(
                    at, EventKind.ORDER_CANCELLED, serial, slot_id, text, {**data, "instanceId": instance_id}
                )
            ]
        if kind == "DeviceDeregisteredNotification":
            self._deregistered_at[str(serial)] = at
            return [
                Event(
                    at,
                    EventKind.DEREGISTERED,
                    serial,
                    None,
                    "DeviceDeregistered: DRS registration ended",
                    data,
                )
            ]
        if kind == "DeviceRegisteredNotification":
            self._deregistered_at.pop(str(serial), None)
            return [Event(at, EventKind.DEVICE_REGISTERED, serial, None, "DeviceRegistered", data)]
        if kind == "SubscriptionChangedNotification":
            return [Event(at, EventKind.SUBSCRIPTION_CHANGED, serial, None, "SubscriptionChanged", data)]
        return []

    def _amazon_order_events(self, known: Mapping[str, Any]) -> list[Event]:
        """Bring the record of one of Amazon's orders up to date; a delivery (or a cancel the
        notifications did not tell) becomes an event."""
        order = self._order(str(known["instanceId"]), known["serial"], known["slotId"])
        placed = known.get("placedAt")
        if placed and order.confirmed_at is None:
            order.confirmed_at = parse_iso(str(placed))
        if known.get("estimatedDeliveryDate"):
            order.eta = parse_iso(str(known["estimatedDeliveryDate"]))
        closed = parse_iso(str(known["closedAt"])) if known.get("closedAt") else None
        if closed is None or not order.open:
            return []
        gone = self._deregistered_at.get(order.serial)
        if gone is not None and gone <= closed:
            return []  # the maker no longer follows a deregistered registration's orders
        text = f"order {short_id(order.instance_id)}"
        if known["state"] == "DELIVERED":
            order.delivered_at = closed
            late = f" ({known['arrivesAt'][:10]}, estimate {known['estimatedDeliveryDate'][:10]})"
            detail = f"Amazon delivered {text}" + (late if closed != order.eta else "")
            kind = EventKind.ORDER_DELIVERED
        elif known["state"] == "CANCELLED":
            order.cancelled_at = closed
            detail, kind = f"Amazon cancelled {text} (its notification was lost)", EventKind.ORDER_CANCELLED
        else:
            return []
        data = {"instanceId": order.instance_id}
        return [Event(closed, kind, order.serial, order.slot_id, detail, data)]

    def _order(self, instance_id: str, serial: str | None, slot_id: str | None) -> OrderRecord:
        order = self.orders.get(instance_id)
        if order is None:
            order = OrderRecord(instance_id, str(serial), str(slot_id), self.is_test_device(serial))
            self.orders[instance_id] = order
        return order

    # --- queries -------------------------------------------------------------------------------

    def of(self, *kinds: EventKind, serial: str | None = None, slot_id: str | None = None) -> list[Event]:
        """The events of ``kinds`` (all kinds if none), optionally of one device or slot."""
        return [
            event
            for event in self.events
            if (not kinds or event.kind in kinds)
            and (serial is None or event.serial == serial)
            and (slot_id is None or event.slot_id == slot_id)
        ]

    def linked_periods(self) -> dict[str, list[tuple[datetime, datetime | None]]]:
        """Per serial, when it was linked: from each link to the end of that DRS registration."""
        periods: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)
        for event in sorted(self.of(EventKind.LINKED, EventKind.DEREGISTERED, EventKind.UNLINKED), key=_at):
            serial = str(event.serial)
            open_period = periods[serial] and periods[serial][-1][1] is None
            if event.kind is EventKind.LINKED:
                if open_period:
                    periods[serial][-1] = (periods[serial][-1][0], event.at)  # a re-link ends the previous
                periods[serial].append((event.at, None))
            elif open_period and event.at > periods[serial][-1][0]:
                periods[serial][-1] = (periods[serial][-1][0], event.at)
        return dict(periods)


def _at(event: Event) -> datetime:
    return event.at


def short_id(instance_id: str | None) -> str:
    """The last characters of an order id: enough to tell orders apart in a timeline."""
    return f"...{instance_id[-6:]}" if instance_id else "?"


# ------------------------------------------------------------------------------------ invariants


@dataclass(frozen=True)
class CheckResult:
    """One invariant: its name, what was checked, and its failures (none: it held)."""

    name: str
    failures: list[str]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures


def check_no_overlapping_orders(
    calls: Sequence[Mapping[str, Any]],
    notifications: Sequence[Mapping[str, Any]],
    orders: Sequence[Mapping[str, Any]] = (),
) -> list[str]:
    """No replenish placed an order on a slot while an earlier order of that slot was still open.

    From the calls log (replenish answers carrying a placed detail code) and the notifications (which
    order each placement became, when it was cancelled, its estimated delivery date: the simulator
    delivers on that date). An order is open from its placement until cancelled, delivered, or its
    device's registration ended (DRS forgets those orders). Test orders are never delivered by the clock.

    The two logs have no common sequence, only simulated times; at one instant, news about orders
    already open is applied first (a cancel lets a new order follow at once), then the placements,
    then the news naming the orders just placed. ``orders`` (the simulator's, with ``closedAt``) tells
    when each order really closed: a late parcel keeps its order open past its estimate, and an order
    whose notifications were lost is named by the replenish answer's ``eventInstanceId``.
    """
    moments: dict[datetime, tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]] = defaultdict(
        lambda: ([], [])
    )
    # A cancel-test-order call that DRS answered closes the device's test orders (of its slot, or all):
    # DRS need not notify it.
    test_cancels: dict[datetime, list[Mapping[str, Any]]] = defaultdict(list)
    for call in calls:
        if call.get("operation") == "replenish" and call.get("detailCode") in PLACED_DETAIL_CODES:
            moments[parse_iso(str(call["at"]))][0].append(call)
        elif call.get("operation") == "cancelTestOrders" and call.get("status") == 200:
            test_cancels[parse_iso(str(call["at"]))].append(call)
    for note in notifications:
        message = json.loads(str(note["envelope"]["Message"]))
        at = parse_iso(str(message.get("notificationInfo", {}).get("notificationTime") or note["at"]))
        moments[at][1].append(message)
    tracker = _OpenOrders(
        {str(o["instanceId"]): parse_iso(str(o["closedAt"])) for o in orders if o.get("closedAt")}
    )
    failures: list[str] = []
    for at in sorted(set(moments) | set(test_cancels)):
        placements, news = moments[at]
        for call in test_cancels.get(at, ()):
            tracker.cancel_test_orders(str(call.get("serial")), call.get("slotId"))
        later = [message for message in news if not tracker.apply(message, known_only=True)]
        for call in placements:
            failures.extend(tracker.place(str(call.get("serial")), str(call.get("slotId")), at, call))
        for message in later:
            tracker.apply(message, known_only=False)
    return failures


class _OpenOrders:
    """The open orders per slot while replaying the logs: [instance id or None (not named yet), eta,
    is test]."""

    def __init__(self, closed: Mapping[str, datetime] | None = None) -> None:
        self.slots: dict[tuple[str, str], list[list[Any]]] = defaultdict(list)
        self.closed = closed or {}

    def place(self, serial: str, slot_id: str, at: datetime, call: Mapping[str, Any]) -> list[str]:
        key = (serial, slot_id)
        # Closed when Amazon says it closed; else delivered on its estimated date (test orders never are).
        self.slots[key] = [o for o in self.slots[key] if not self._closed_by(o, at)]
        failures = (
            [
                f"{serial}/{slot_id}: replenish placed an order at {to_iso(at)} while order "
                f"{short_id(self.slots[key][0][0])} was open"
            ]
            if self.slots[key]
            else []
        )
        self.slots[key].append(
            [call.get("eventInstanceId"), None, call.get("detailCode") == "TEST_ORDER_PLACED"]
        )
        return failures

    def cancel_test_orders(self, serial: str, slot_id: str | None) -> None:
        """DRS answered a cancel-test-order call: the device's test orders (of ``slot_id``, or of every
        slot) are closed."""
        for (each_serial, each_slot), orders in self.slots.items():
            if each_serial == serial and slot_id in (None, each_slot):
                orders[:] = [order for order in orders if not order[2]]

    def _closed_by(self, order: list[Any], at: datetime) -> bool:
        if order[0] in self.closed:
            return bool(self.closed[order[0]] <= at)
        return not order[2] and order[1] is not None and order[1] <= at

    def apply(self, message: Mapping[str, Any], *, known_only: bool) -> bool:
        """Apply one notification; with ``known_only``, only if it is about an order already named
        (or a deregistration). True when applied."""
        info = message.get("notificationInfo", {})
        kind = info.get("notificationType")
        serial = str(message.get("deviceInfo", {}).get("deviceIdentifier", {}).get("serialNumber"))
        if kind == "DeviceDeregisteredNotification":
            for key in [k for k in self.slots if k[0] == serial]:
                self.slots[key] = []
            return True
        order_info = message.get("orderInfo") or {}
        instance_id = order_info.get("instanceId")
        if not instance_id:
            return True  # not about an order
        key = (serial, str(order_info.get("slotId")))
        order = next((o for o in self.slots[key] if o[0] == instance_id), None)
        if order is None:
            if known_only:
                return False
            order = next((o for o in self.slots[key] if o[0] is None), None)
            if order is None:
                return True  # an order already closed (late or repeated news)
            order[0] = instance_id
        if kind == "OrderCancelledNotification":
            self.slots[key].remove(order)
        elif kind in ("OrderPlacedNotification", "ItemShippedNotification"):
            products = order_info.get("productInfo") or [{}]
            eta = order_info.get("estimatedDeliveryDate") or products[0].get("estimatedDeliveryDate")
            if eta:
                order[1] = parse_iso(eta)
        return True


def check_one_order_per_need(events: Sequence[Event], *, test_devices: Iterable[str] = ()) -> list[str]:
    """Between two refills of a slot, at most one order that was not cancelled (test devices aside).

    A need is a slot running down between refills: once one order for it stands, another would be a
    duplicate, whatever the retries, redeliveries or concurrency behind it.
    """
    skip = set(test_devices)
    standing: Counter[tuple[str, str]] = Counter()
    since: dict[tuple[str, str], datetime | None] = {}
    failures: list[str] = []
    for event in sorted(events, key=_at):
        if event.serial in skip or event.slot_id is None:
            continue
        key = (str(event.serial), event.slot_id)
        if event.kind is EventKind.REFILL:
            standing[key], since[key] = 0, event.at
        elif event.kind is EventKind.ORDER_PLACED:
            standing[key] += 1
            if standing[key] > 1:
                start = since.get(key)
                begin = f"since the refill at {to_iso(start)}" if start else "since the start"
                failures.append(
                    f"{key[0]}/{key[1]}: {standing[key]} standing orders for one need "
                    f"(order placed at {to_iso(event.at)}, {begin})"
                )
        elif event.kind is EventKind.ORDER_CANCELLED:
            standing[key] = max(0, standing[key] - 1)
    return failures


def check_cooldowns(events: Sequence[Event], *, test_devices: Iterable[str] = ()) -> list[str]:
    """After a customer cancel, no order on that slot for ``CUSTOMER_CANCEL_COOLDOWN`` (test devices'
    cancels are the maker's own test flows: no cooldown)."""
    skip = set(test_devices)
    cancelled: dict[tuple[str, str], datetime] = {}
    failures: list[str] = []
    for event in sorted(events, key=_at):
        if event.serial in skip or event.slot_id is None:
            continue
        key = (str(event.serial), event.slot_id)
        if event.kind is EventKind.ORDER_CANCELLED:
            cancelled[key] = event.at
        elif (
            event.kind is EventKind.ORDER_PLACED
            and key in cancelled
            and event.at < cancelled[key] + CUSTOMER_CANCEL_COOLDOWN
        ):
            failures.append(
                f"{key[0]}/{key[1]}: order placed at {to_iso(event.at)}, within the cooldown after "
                f"the cancel at {to_iso(cancelled[key])}"
            )
    return failures


def dry_periods(history: Sequence[tuple[datetime, float]]) -> list[tuple[datetime, datetime]]:
    """When a slot's level history sat at zero (empty, nothing loaded): (start, end) spans, merged."""
    spans: list[tuple[datetime, datetime]] = []
    for (start, before), (end, after) in pairwise(history):
        if before > 0 or after > 0 or end <= start:
            continue
        if spans and spans[-1][1] >= start:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def dry_hours(history: Sequence[tuple[datetime, float]]) -> float:
    """Hours a slot was empty with nothing to load (stockout hours)."""
    return sum((end - start).total_seconds() for start, end in dry_periods(history)) / 3600


def check_no_avoidable_dry(
    dry: Mapping[tuple[str, str], Sequence[tuple[datetime, datetime]]],
    events: Sequence[Event],
    linked: Mapping[str, Sequence[tuple[datetime, datetime | None]]],
    *,
    delivery_time: timedelta,
    grace: timedelta,
    test_devices: Iterable[str] = (),
) -> list[str]:
    """No slot ran dry while an order placed on time would have prevented it.

    For each dry period of a slot, the moment an order had to be placed to arrive by its start is
    ``delivery_time`` before it, less ``grace`` (how late a reading can reach the backend). The backend
    is at fault if the slot could have ordered then: its device linked, no order of the slot open (an
    order in the pipeline that arrives late is Amazon's delay, not the policy's), no customer cancel
    in the cooldown before, fewer than two cancels since the last refill. Test devices are skipped.
    """
    skip = set(test_devices)
    per_slot: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for event in sorted(events, key=_at):
        if event.serial is not None and event.slot_id is not None:
            per_slot[(str(event.serial), event.slot_id)].append(event)
    failures: list[str] = []
    for (serial, slot_id), spans in dry.items():
        if serial in skip:
            continue
        for start, end in spans:
            due = start - delivery_time - grace
            reason = _why_no_order(per_slot[(serial, slot_id)], linked.get(serial, ()), due)
            if reason is None:
                failures.append(
                    f"{serial}/{slot_id}: dry from {to_iso(start)} to {to_iso(end)}, though it could have "
                    f"ordered at {to_iso(due)} ({delivery_time.days} days of delivery before)"
                )
    return failures


def _why_no_order(
    events: Sequence[Event], linked: Sequence[tuple[datetime, datetime | None]], at: datetime
) -> str | None:
    """Why the slot could not order at ``at`` (None: it could have)."""
    if not any(begin <= at and (end is None or at < end) for begin, end in linked):
        return "not linked (or not yet)"
    placed: datetime | None = None
    cancels = 0
    for event in events:
        if event.at > at:
            break
        if event.kind is EventKind.ORDER_PLACED:
            placed = event.at
        elif event.kind in (EventKind.ORDER_CANCELLED, EventKind.ORDER_DELIVERED):
            placed = None
            if event.kind is EventKind.ORDER_CANCELLED:
                cancels += 1
                if at < event.at + CUSTOMER_CANCEL_COOLDOWN:
                    return "cooldown after a customer cancel"
        elif event.kind is EventKind.REFILL:
            cancels = 0
    if placed is not None:
        return "an order was open"
    if cancels >= 2:
        return "blocked until refill after two cancels"
    return None


def check_daily_device_status(
    calls: Sequence[Mapping[str, Any]],
    linked_periods: Mapping[str, Sequence[tuple[datetime, datetime | None]]],
    *,
    end: datetime,
) -> list[str]:
    """Every device got an accepted ``deviceStatus`` on every UTC day it was linked from start to end.

    Days are whole simulated UTC days that began after the link, ended before the registration ended
    and before ``end``; a device linked mid-day is first due the next day.
    """
    reported: dict[str, set[str]] = defaultdict(set)
    for call in calls:
        if call.get("operation") == "deviceStatus" and call.get("status") == 200 and not call.get("fault"):
            reported[str(call.get("serial"))].add(str(call["at"])[:10])
    failures: list[str] = []
    for serial, periods in sorted(linked_periods.items()):
        for start, stop in periods:
            # The first whole day after the link: a device linked at 00:00 may have missed its bucket's
            # hour that day (the planner ran before the link), exactly as in the cloud.
            day = datetime(start.year, start.month, start.day, tzinfo=start.tzinfo) + timedelta(days=1)
            missing = []
            while day + timedelta(days=1) <= end and (stop is None or day + timedelta(days=1) <= stop):
                if day.date().isoformat() not in reported[serial]:
                    missing.append(day.date().isoformat())
                day += timedelta(days=1)
            if missing:
                failures.append(f"{serial}: no deviceStatus on {', '.join(missing)}")
    return failures


def check_dead_letter_queues(
    dead_letters: Mapping[str, Sequence[Mapping[str, Any]]],
    explain: Callable[[str, Mapping[str, Any]], str | None] | None = None,
) -> list[str]:
    """Every dead-letter queue is empty, or each message in one is explained by ``explain``."""
    failures = []
    for queue, messages in sorted(dead_letters.items()):
        for message in messages:
            reason = explain(queue, message) if explain is not None else None
            if reason is None:
                body = str(message.get("body", ""))[:160]
                failures.append(f"{queue} holds an unexplained message {message.get('messageId')}: {body}")
    return failures


def check_notifications_delivered(*, published: int, handled: int, queued: int, dead: int) -> list[str]:
    """Every notification DRS published was handled: none still queued, none in the DLQ, none lost."""
    failures = []
    if queued:
        failures.append(f"{queued} notification(s) still queued, never handled")
    if dead:
        failures.append(f"{dead} notification(s) in the dead-letter queue")
    if handled + queued + dead != published:
        failures.append(f"{published} published but {handled} handled, {queued} queued, {dead} dead: lost")
    return failures


def check_no_gateway_5xx(http_statuses: Mapping[int, int]) -> list[str]:
    """The gateway never answered 5xx."""
    return [
        f"the gateway answered {status} {count} time(s)"
        for status, count in sorted(http_statuses.items())
        if int(status) >= 500
    ]


def check_function_errors(
    errors: Sequence[FunctionError],
    *,
    expected: Callable[[FunctionError], bool] | None = None,
    total: int | None = None,
) -> list[str]:
    """No invocation raised, except errors the scenario injected and ``expected`` accepts.

    ``total`` (the system's own error count) catches errors the callback did not see.
    """
    failures = [
        f"{e.function} raised {e.error_type} at {to_iso(e.at)}: {e.message}"
        for e in errors
        if expected is None or not expected(e)
    ]
    if total is not None and total != len(errors):
        failures.append(f"the system counted {total} function error(s), the timeline saw {len(errors)}")
    return failures


def notification_counts(system: EmbeddedSystem, published: int) -> dict[str, int]:
    """``published`` and, from the notifications pump and its queues: handled, queued, dead."""
    from sandbox.template import friendly_name

    pump = next(p for p in system.pumps if p.name == NOTIFICATIONS_PUMP)
    queue = pump.queue  # type: ignore[attr-defined]
    dead_name = next(
        (
            friendly_name(q.logical_id)
            for q in system.resources.queues.values()  # type: ignore[union-attr]
            if q.arn == queue.dead_letter_arn
        ),
        None,
    )
    dead = len(system.dlq_messages().get(dead_name, [])) if dead_name else 0
    return {
        "published": published,
        "handled": pump.stats.processed,
        "queued": system.queue_depths().get(friendly_name(queue.logical_id), 0),
        "dead": dead,
    }


def check_system(
    system: EmbeddedSystem,
    timeline: Timeline,
    *,
    expected_error: Callable[[FunctionError], bool] | None = None,
    explain_dead_letter: Callable[[str, Mapping[str, Any]], str | None] | None = None,
) -> list[CheckResult]:
    """Every invariant over a finished scenario (the timeline is polled once more first)."""
    timeline.poll()
    end = system.clock.now()
    tests = [serial for serial in timeline.linked_periods() if timeline.is_test_device(serial)]
    placed = timeline.of(EventKind.ORDER_PLACED)
    counts = notification_counts(system, len(timeline.notifications))
    periods = timeline.linked_periods()
    device_days = len(timeline.of(EventKind.REPORT_DEVICE))
    statuses = system.http_statuses
    return [
        CheckResult(
            "no duplicate order: never a replenish placing an order while one is open",
            check_no_overlapping_orders(timeline.calls, timeline.notifications, timeline.amazon_orders),
            f"{len(placed)} orders placed",
        ),
        CheckResult(
            "no duplicate order: one standing order per need (between refills)",
            check_one_order_per_need(timeline.events, test_devices=tests),
            f"{len(timeline.of(EventKind.REFILL))} refills",
        ),
        CheckResult(
            "no order within 5 days of a customer cancel",
            check_cooldowns(timeline.events, test_devices=tests),
            f"{len(timeline.of(EventKind.ORDER_CANCELLED))} cancels",
        ),
        CheckResult(
            "every linked device reported (deviceStatus) every day",
            check_daily_device_status(timeline.calls, periods, end=end),
            f"{device_days} deviceStatus reports, {len(periods)} devices",
        ),
        CheckResult(
            "no notification lost or left in a queue",
            check_notifications_delivered(**counts),
            f"{counts['published']} published, {counts['handled']} handled",
        ),
        CheckResult(
            "no message left in a dead-letter queue unexplained",
            check_dead_letter_queues(system.dlq_messages(), explain_dead_letter),
        ),
        CheckResult(
            "no 5xx from the gateway",
            check_no_gateway_5xx(statuses),
            f"{sum(statuses.values())} requests: "
            + ", ".join(f"{code} x{n}" for code, n in sorted(statuses.items())),
        ),
        CheckResult(
            "no function error but the injected, expected ones",
            check_function_errors(
                timeline.function_errors,
                expected=expected_error,
                total=sum(system.errors.values()),
            ),
            f"{sum(timeline.invocations.values())} invocations, {len(timeline.function_errors)} errors",
        ),
    ]


# A slot may wait this long for what it needs (an order when low, or its order closed when Amazon
# closed it): the daily visit checks orders one day past their estimate, in its bucket's hour.
STUCK_AFTER = timedelta(days=3)
LOW_FRACTION = 0.2  # the policy's threshold: a slot this low needs an order whatever its forecast
OPEN_AT_AMAZON = frozenset({"TROUBLED", "PLACED", "SHIPPED"})
OPEN_IN_BACKEND = frozenset({"REQUESTED", "PLACED", "SHIPPED"})


def backend_orders(client: SandboxClient, devices: Iterable[SimulatedDevice]) -> dict[tuple[str, str], Any]:
    """The order side of every slot of the active devices, as the backend shows it to the app."""
    orders: dict[tuple[str, str], Any] = {}
    for device in devices:
        if device.active:
            for slot in client.get_device(device.device)["slots"]:
                orders[(device.serial, str(slot["slotId"]))] = slot.get("order") or {}
    return orders


def check_no_slot_stuck(
    devices: Iterable[SimulatedDevice],
    amazon_orders: Sequence[Mapping[str, Any]],
    backend: Mapping[tuple[str, str], Mapping[str, Any]],
    events: Sequence[Event],
    *,
    now: datetime,
    skip: Iterable[str] = (),
) -> list[str]:
    """No slot is wedged: (1) the backend holds no order open that Amazon closed more than
    ``STUCK_AFTER`` ago; (2) no slot in use has sat under ``LOW_FRACTION`` of its capacity for
    ``STUCK_AFTER`` with no package waiting, no order open at Amazon and no customer cancel in the
    last 5 days (the cooldown). Test devices and devices no longer linked (``skip``) are left out."""
    skipped = set(skip)
    closed = {str(o["instanceId"]): parse_iso(str(o["closedAt"])) for o in amazon_orders if o.get("closedAt")}
    open_at_amazon = {
        (str(o["serial"]), str(o["slotId"])) for o in amazon_orders if o["state"] in OPEN_AT_AMAZON
    }
    cancels: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for event in events:
        if event.kind is EventKind.ORDER_CANCELLED and event.slot_id:
            cancels[(str(event.serial), event.slot_id)].append(event.at)
    failures: list[str] = []
    for device in devices:
        if not device.active or device.serial in skipped:
            continue
        for slot in device.slots.values():
            key = (device.serial, slot.slot_id)
            order = backend.get(key, {})
            instance_id = order.get("instanceId")
            if (
                order.get("state") in OPEN_IN_BACKEND
                and instance_id in closed
                and now - closed[instance_id] >= STUCK_AFTER
            ):
                failures.append(
                    f"{key[0]}/{key[1]}: the backend holds order {short_id(instance_id)} "
                    f"{order['state']}, closed by Amazon at {to_iso(closed[instance_id])}"
                )
                continue
            low_since = _low_since(slot, now)
            recent_cancel = any(now - at < CUSTOMER_CANCEL_COOLDOWN + STUCK_AFTER for at in cancels[key])
            if (
                low_since is not None
                and now - low_since >= STUCK_AFTER
                and not slot.packages
                and key not in open_at_amazon
                and not recent_cancel
            ):
                failures.append(
                    f"{key[0]}/{key[1]}: under {LOW_FRACTION:.0%} since {to_iso(low_since)} with no order "
                    f"(backend: {order.get('state')})"
                )
    return failures


def _low_since(slot: SimulatedSlot, now: datetime) -> datetime | None:
    """Since when the slot has stayed under ``LOW_FRACTION`` of its capacity (None: it is not now)."""
    limit = LOW_FRACTION * slot.capacity
    since = None
    for at, level in reversed(slot.history):
        if level >= limit:
            break
        since = at
    return since


def failures_of(results: Iterable[CheckResult]) -> list[str]:
    """Every failure of every check, prefixed with the check's name."""
    return [f"{result.name}: {failure}" for result in results for failure in result.failures]


def idempotency_key(*parts: object) -> str:
    """A stable ``Idempotency-Key`` for a device request (the same request → the same key)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode("ascii")
