"""The order lifecycle of one slot, as a pure transition function.

``NONE → REQUESTED → PLACED → SHIPPED → NONE`` (delivery is a refill reading, or DRS's answer when the
daily visit asks about an overdue order: ``services.order_truth``); ``REQUESTED|PLACED → CANCELLED``,
which counts as closed: a new order may be claimed once the cooldown (5 days after a customer cancel)
has passed, and never after a second customer cancel until the slot is refilled. Events carry the
order's instance id; an event about an order other than the slot's current one is stale and rejected,
so late or duplicated notifications cannot move a slot backwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from drs_core.domain.models import OrderState, SlotOrder
from drs_core.errors import InvalidTransition

CUSTOMER_CANCEL_COOLDOWN = timedelta(days=5)
DELIVERY_GRACE = timedelta(days=2)

OPEN_STATES = frozenset({OrderState.REQUESTED, OrderState.PLACED, OrderState.SHIPPED})

# How far along an order is: a message about an earlier stage than the slot has reached is stale.
RANK = {
    OrderState.NONE: 0,
    OrderState.REQUESTED: 1,
    OrderState.PLACED: 2,
    OrderState.SHIPPED: 3,
    OrderState.CANCELLED: 4,
}


class OrderEvent(StrEnum):
    CLAIM = "CLAIM"  # the reorder decision takes the slot (before calling replenish)
    RELEASE = "RELEASE"  # replenish finally failed: give the claim back
    PLACE = "PLACE"  # replenish accepted, or OrderPlaced / ORDER_INPROGRESS adopted
    SHIP = "SHIP"  # ItemShipped
    CANCEL = "CANCEL"  # OrderCancelled (customer, resolution-flow expiry, or test-order cancel)
    DELIVER = "DELIVER"  # inferred: refill seen, or estimated delivery + grace passed


@dataclass(frozen=True, slots=True)
class Change:
    event: OrderEvent
    at: datetime
    instance_id: str | None = None
    estimated_delivery_date: datetime | None = None
    customer_cancel: bool = True  # False for our own test-order cancels: no cooldown


_ALLOWED: dict[OrderEvent, frozenset[OrderState]] = {
    OrderEvent.CLAIM: frozenset({OrderState.NONE, OrderState.CANCELLED}),
    OrderEvent.RELEASE: frozenset({OrderState.REQUESTED}),
    OrderEvent.PLACE: frozenset(
        {OrderState.NONE, OrderState.CANCELLED, OrderState.REQUESTED, OrderState.PLACED}
    ),
    OrderEvent.SHIP: frozenset({OrderState.REQUESTED, OrderState.PLACED, OrderState.SHIPPED}),
    OrderEvent.CANCEL: frozenset({OrderState.REQUESTED, OrderState.PLACED, OrderState.CANCELLED}),
    OrderEvent.DELIVER: frozenset({OrderState.PLACED, OrderState.SHIPPED}),
}


def is_open(state: OrderState) -> bool:
    return state in OPEN_STATES


def _same_order(order: SlotOrder, change: Change) -> bool:
    return order.instance_id is None or change.instance_id is None or order.instance_id == change.instance_id


def apply(order: SlotOrder, change: Change) -> SlotOrder:
    """The slot's order after ``change``; raises ``InvalidTransition`` if the change does not apply."""
    if order.state not in _ALLOWED[change.event]:
        raise InvalidTransition(f"{change.event} is not allowed in state {order.state}")
    # A new order may replace a closed one; any other change must be about the slot's current order.
    opens_new = change.event in (OrderEvent.CLAIM, OrderEvent.PLACE) and not is_open(order.state)
    if not opens_new and not _same_order(order, change):
        raise InvalidTransition(f"{change.event} is about another order than the slot's current one")

    match change.event:
        case OrderEvent.CLAIM:
            if order.cooldown_until is not None and change.at < order.cooldown_until:
                raise InvalidTransition("the slot is in its cooldown after a cancelled order")
            return SlotOrder(OrderState.REQUESTED, cancels_since_refill=order.cancels_since_refill)
        case OrderEvent.RELEASE:
            return replace(order, state=OrderState.NONE, instance_id=None)
        case OrderEvent.PLACE:
            return replace(
                order,
                state=OrderState.PLACED,
                instance_id=change.instance_id or order.instance_id,
                estimated_delivery_date=change.estimated_delivery_date or order.estimated_delivery_date,
                cooldown_until=None,
            )
        case OrderEvent.SHIP:
            return replace(
                order,
                state=OrderState.SHIPPED,
                instance_id=change.instance_id or order.instance_id,
                estimated_delivery_date=change.estimated_delivery_date or order.estimated_delivery_date,
            )
        case OrderEvent.CANCEL:
            if order.state is OrderState.CANCELLED:
                return order  # a repeated cancel changes nothing
            if not change.customer_cancel:
                return replace(order, state=OrderState.CANCELLED, estimated_delivery_date=None)
            return replace(
                order,
                state=OrderState.CANCELLED,
                estimated_delivery_date=None,
                cooldown_until=change.at + CUSTOMER_CANCEL_COOLDOWN,
                cancels_since_refill=order.cancels_since_refill + 1,
            )
        case OrderEvent.DELIVER:
            return SlotOrder(OrderState.NONE, cancels_since_refill=order.cancels_since_refill)
    raise AssertionError(change.event)  # pragma: no cover - the match is exhaustive


def delivery_overdue(order: SlotOrder, now: datetime) -> bool:
    """True once an open order's estimated delivery date plus grace has passed: infer delivery."""
    return (
        order.state in (OrderState.PLACED, OrderState.SHIPPED)
        and order.estimated_delivery_date is not None
        and now >= order.estimated_delivery_date + DELIVERY_GRACE
    )


# A parcel may come this long before its estimated delivery date.
EARLY_ARRIVAL = timedelta(days=1)


def delivered_by_refill(order: SlotOrder, at: datetime) -> bool:
    """Whether a refill at ``at`` means the slot's open order arrived: a shipped one, or a placed one
    whose estimated date is near or past (its ItemShipped may have been lost). A placed order with no
    date yet is left to the daily check with DRS. If DRS still has a delivered order open, its next
    ``ORDER_INPROGRESS`` re-opens it."""
    if order.state is OrderState.SHIPPED:
        return True
    eta = order.estimated_delivery_date
    return order.state is OrderState.PLACED and eta is not None and at >= eta - EARLY_ARRIVAL


def on_refill(order: SlotOrder, now: datetime) -> SlotOrder:
    """A refill reading: the slot's arrived order is delivered, and the cancel count starts over."""
    if delivered_by_refill(order, now):
        order = apply(order, Change(OrderEvent.DELIVER, now))
    return replace(order, cancels_since_refill=0)
