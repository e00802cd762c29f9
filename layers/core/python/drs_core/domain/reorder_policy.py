"""When to reorder: the reorder point, and the reasons never to.

The policy is expressed as a *reorder point*, a quantity: reorder when stock (remaining + on hand) is at
or below it. Once the daily visit has estimated the slot's demand (``domain.estimation``: level,
weekly pattern, variability, learnt lead time), the reorder point is that plan's: use over the lead time
plus a safety stock from the observed variability. Until then it is the larger of the threshold
fraction of a full slot and the consumption expected over lead time plus the policy's safety days. A
quantity can be compared inside a DynamoDB condition, so the hot path decides "due" without reading the
slot first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from drs_core.domain.models import DeviceStatus, Slot, SlotOrder, SlotPolicy
from drs_core.domain.order_lifecycle import is_open

# After a second customer cancel, no reorder until the slot is refilled (DRS CX guideline).
MAX_CANCELS_BEFORE_REFILL = 2
# How long a silent device's use is still projected (``expected_stock``): offline spells, batched uploads.
PROJECT_SILENCE_FOR = timedelta(days=3)
# ... once it is this late: a device reporting on time has its own readings compared on the hot path.
PROJECT_SILENCE_FROM = timedelta(hours=12)


class Verdict(StrEnum):
    REORDER = "REORDER"
    ENOUGH_STOCK = "ENOUGH_STOCK"
    NOT_SUBSCRIBED = "NOT_SUBSCRIBED"
    AUTO_REORDER_OFF = "AUTO_REORDER_OFF"
    DEVICE_NOT_LINKED = "DEVICE_NOT_LINKED"
    ORDER_OPEN = "ORDER_OPEN"
    COOLDOWN = "COOLDOWN"
    BLOCKED_UNTIL_REFILL = "BLOCKED_UNTIL_REFILL"


def reorder_point(
    original_quantity: float,
    policy: SlotPolicy,
    daily_consumption: float | None,
    planned: float | None = None,
) -> float:
    """Stock level at or below which a slot needs an order: the daily plan's (``planned``, from
    ``estimation.plan``) when there is one, else the policy's fixed rule."""
    if planned is not None and planned > 0:
        return planned
    by_fraction = policy.threshold_fraction * max(original_quantity, 0.0)
    by_forecast = (daily_consumption or 0.0) * (policy.lead_time_days + policy.safety_days)
    return max(by_fraction, by_forecast)


def expected_stock(slot: Slot, now: datetime) -> float:
    """Stock (remaining + on hand) now: as last reported, less the use expected since, at the estimated
    rate, while the device has been silent up to ``PROJECT_SILENCE_FOR`` (offline, or between uploads).

    A device silent for longer is taken to be off or away, its slot unused: no use is projected. Readings
    arrive a few times a day, so on the hot path the projection is negligible; it matters for the daily
    visit, which orders for a device whose stock crossed the reorder point while it was offline.
    """
    stock = slot.remaining_quantity + slot.on_hand_quantity
    if slot.last_reading_at is None or not slot.daily_consumption or slot.daily_consumption <= 0:
        return stock
    silence = now - slot.last_reading_at
    if silence < PROJECT_SILENCE_FROM or silence > PROJECT_SILENCE_FOR:
        return stock
    used = slot.daily_consumption * silence.total_seconds() / 86_400
    return stock - min(used, max(slot.remaining_quantity, 0.0))


def in_cooldown(order: SlotOrder, now: datetime) -> bool:
    return order.cooldown_until is not None and now < order.cooldown_until


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict

    @property
    def reorder(self) -> bool:
        return self.verdict is Verdict.REORDER


def decide(device_status: DeviceStatus, slot: Slot, now: datetime) -> Decision:
    """Whether ``slot`` should be reordered now. The blocking reasons are checked before stock."""
    order = slot.order
    if not slot.subscribed:
        return Decision(Verdict.NOT_SUBSCRIBED)
    if not slot.policy.auto_reorder:
        return Decision(Verdict.AUTO_REORDER_OFF)
    if device_status is not DeviceStatus.LINKED:
        return Decision(Verdict.DEVICE_NOT_LINKED)
    if is_open(order.state):
        return Decision(Verdict.ORDER_OPEN)
    if order.cancels_since_refill >= MAX_CANCELS_BEFORE_REFILL:
        return Decision(Verdict.BLOCKED_UNTIL_REFILL)
    if in_cooldown(order, now):
        return Decision(Verdict.COOLDOWN)
    stock = expected_stock(slot, now)
    point = reorder_point(
        slot.original_quantity, slot.policy, slot.daily_consumption, slot.planned_reorder_point
    )
    if stock <= point:
        return Decision(Verdict.REORDER)
    return Decision(Verdict.ENOUGH_STOCK)
