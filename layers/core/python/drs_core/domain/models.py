"""Domain models: plain, immutable data. Adapters map them to and from storage and the wire."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum


class DeviceStatus(StrEnum):
    LINKED = "LINKED"
    REAUTH_REQUIRED = "REAUTH_REQUIRED"
    DEREGISTERED = "DEREGISTERED"


class OrderState(StrEnum):
    NONE = "NONE"
    REQUESTED = "REQUESTED"
    PLACED = "PLACED"
    SHIPPED = "SHIPPED"
    CANCELLED = "CANCELLED"


class ReadingKind(StrEnum):
    REMAINING = "remaining"  # absolute level now in the slot
    CONSUMED = "consumed"  # delta used since the last reading
    REFILLED = "refilled"  # the customer loaded new stock


@dataclass(frozen=True, slots=True)
class SlotPolicy:
    """Reorder policy of a slot: the device model's defaults, overridable per slot."""

    threshold_fraction: float = 0.2
    lead_time_days: float = 7.0  # DRS's guideline: order at least 7 days before run-out
    safety_days: float = 2.0
    auto_reorder: bool = True


@dataclass(frozen=True, slots=True)
class SlotOrder:
    """The order side of a slot: where its current order stands in the lifecycle."""

    state: OrderState = OrderState.NONE
    instance_id: str | None = None
    estimated_delivery_date: datetime | None = None
    cooldown_until: datetime | None = None
    # Customer cancels since the slot was last refilled; a second one blocks reorders until refill.
    cancels_since_refill: int = 0


@dataclass(frozen=True, slots=True)
class Slot:
    serial: str
    slot_id: str
    subscribed: bool = False
    asin: str | None = None
    unit: str | None = None
    original_quantity: float = 0.0
    remaining_quantity: float = 0.0
    on_hand_quantity: float = 0.0
    daily_consumption: float | None = None  # rate estimate, units per day
    last_use_at: datetime | None = None
    order: SlotOrder = field(default_factory=SlotOrder)
    policy: SlotPolicy = field(default_factory=SlotPolicy)
    version: int = 0
    # Server time of the slot's last usage reading: the device's last activity is the newest of these.
    last_reading_at: datetime | None = None
    # The daily plan's reorder point (``estimation.plan``); None until the slot's demand is estimated.
    planned_reorder_point: float | None = None

    def with_order(self, **changes: object) -> Slot:
        return replace(self, order=replace(self.order, **changes))


@dataclass(frozen=True, slots=True)
class Device:
    serial: str
    model_id: str
    owner_id: str | None = None
    status: DeviceStatus = DeviceStatus.LINKED
    is_test_device: bool = False
    last_active_at: datetime | None = None
    credential_hash: str | None = None
    linked_at: datetime | None = None
    version: int = 0
    # The current link's id, also stamped on every slot: the usage write checks it (services/linking.py).
    link_id: str | None = None


@dataclass(frozen=True, slots=True)
class Order:
    """One DRS order (``ORDER#<instanceId>`` item): the history the slot's current state summarises."""

    serial: str
    instance_id: str
    slot_id: str
    state: OrderState
    is_test: bool = False
    asin: str | None = None
    quantity: float | None = None
    unit: str | None = None
    placed_at: datetime | None = None
    estimated_delivery_date: datetime | None = None
    last_notification_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """One usage report for one slot: exactly one of remaining / consumed / refilled."""

    slot_id: str
    observed_at: datetime
    kind: ReadingKind
    quantity: float
    original_quantity: float | None = None
