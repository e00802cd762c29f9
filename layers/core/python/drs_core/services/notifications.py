"""Following DRS: each of the six notification types moves device, slot or order state.

SNS → SQS delivers at least once and in any order, so every effect is safe to repeat and to receive late
(the handler adds Powertools idempotency per ``notificationId`` on top; this module does not rely on it):

- **Orders** (OrderPlaced → ``PLACED``, ItemShipped → ``SHIPPED`` plus the quantity added to stock on
  hand, OrderCancelled → ``CANCELLED`` with the cooldown): the order's history (``ORDER#`` item) only
  moves forward, by ``order_lifecycle.RANK`` and then ``notificationTime``; a message that is not
  progress changes no state (a late OrderPlaced after ItemShipped only fills in what the history did
  not know). The slot moves through ``order_lifecycle.apply`` with a conditional write on the state
  read, so an event about another order than the slot's is refused. The history is checked first and
  written last: a retry after a partial failure repeats the slot move, which is idempotent (shipping
  is one write guarded by the state it leaves, so stock on hand is added once).
- A slot claimed for a new order (``REQUESTED``, no order id yet) does not take a message older than
  its claim: that one is about an earlier order.
- **SubscriptionChanged** updates the slots it names (a new one is created, a cleared one unsubscribed);
  it and **DeviceRegistered/Deregistered** are guarded by the time of the last message of their kind
  applied to the item. Slots it leaves out are left alone: DRS sends the full map anyway, and
  unsubscribing absent slots would make the result depend on arrival order.
- **DeviceRegistered** creates a device we do not know as not linked (no owner, no tokens, status
  ``DEREGISTERED``) so that linking takes it; a known device keeps owner, credential and status.
  **DeviceDeregistered** destroys the tokens and marks the device ``DEREGISTERED``, unless it is not
  newer than the device's ``linkedAt`` (re-linking makes DRS deregister the previous registration).
- OrderCancelled on a test device (our test-order flows) starts no cooldown; any other is taken as the
  customer's (DRS gives no reason, so a 72 h resolution-flow expiry counts too).
- **Delivery** has no notification: ``settle_deliveries`` infers it (see there).

An order notification for a slot we do not hold, or a deregistration of a device we do not know, is
logged, counted (``NotificationForUnknownDevice``) and acknowledged: retrying would not make it known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from drs_core.adapters.notification_store import (
    NotificationStore,
    OrderFacts,
    OrderProgress,
    Written,
    mark_order_delivered,
)
from drs_core.adapters.state_repository import StateRepository
from drs_core.catalog import packs_of
from drs_core.clock import default_clock
from drs_core.domain.models import OrderState, Slot, SlotOrder
from drs_core.domain.order_lifecycle import RANK, Change, OrderEvent, apply, delivery_overdue
from drs_core.errors import InvalidTransition
from drs_core.notifications.models import (
    DeviceDeregistered,
    DeviceRegistered,
    ItemShipped,
    Notification,
    NotificationType,
    OrderCancelled,
    OrderNotification,
    OrderPlaced,
    SubscriptionChanged,
)
from drs_core.observability import NAMESPACE, logger, metrics
from drs_core.services.slot_stock import apply_catalog_subscription, shipped_stock

# A claim's clock and DRS's may disagree a little: only a message clearly older than the claim is stale.
CLAIM_CLOCK_SKEW = timedelta(minutes=1)
# Conditional slot writes lost to a concurrent writer before the record is failed (and retried by SQS).
MAX_SLOT_ATTEMPTS = 3

UNKNOWN_DEVICE_METRIC = "NotificationForUnknownDevice"
OUTCOME_METRIC = "Notifications"


class Outcome(StrEnum):
    APPLIED = "applied"  # state moved
    STALE = "stale"  # a repeat, out of order, or about another order: nothing moved
    DUPLICATE = "duplicate"  # this notificationId was handled before (the idempotency record answered)
    UNKNOWN = "unknown"  # a device or slot we do not hold: acknowledged and counted
    IGNORED = "ignored"  # a notification type we do not handle
    MALFORMED = "malformed"  # could not be parsed: the record fails and reaches the DLQ after retries
    FAILED = "failed"  # an error while applying (AWS, contention): the record fails and is retried


class TokenDestroyer(Protocol):
    """What a deregistration needs of the token vault."""

    def destroy(self, serial: str) -> None: ...


class SlotContention(RuntimeError):
    """The slot kept changing under us; the record fails and SQS retries it."""


def handle_notification(
    notification: Notification, *, store: NotificationStore, tokens: TokenDestroyer
) -> Outcome:
    """Apply one parsed DRS notification; safe to call again with the same or an older message."""
    handler = _HANDLERS[notification.kind]
    return handler(notification, store, tokens)


def count_outcome(kind: str, outcome: Outcome) -> None:
    """One ``Notifications`` metric with dimensions ``type`` and ``outcome``.

    Emitted on its own (``single_metric``) because the dimensions differ between records of one batch.
    ``kind`` should be one of the six types, or "Other"/"Unparsed", to keep the dimension bounded.
    """
    with single_metric(
        name=OUTCOME_METRIC,
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        metric.add_dimension(name="type", value=kind)
        metric.add_dimension(name="outcome", value=outcome.value)


# --- orders ----------------------------------------------------------------------------------------

_ORDER_EVENTS: dict[NotificationType, tuple[OrderEvent, OrderState]] = {
    NotificationType.ORDER_PLACED: (OrderEvent.PLACE, OrderState.PLACED),
    NotificationType.ITEM_SHIPPED: (OrderEvent.SHIP, OrderState.SHIPPED),
    NotificationType.ORDER_CANCELLED: (OrderEvent.CANCEL, OrderState.CANCELLED),
}


def _on_order(notification: Notification, store: NotificationStore, _tokens: TokenDestroyer) -> Outcome:
    assert isinstance(notification, OrderNotification)
    event, target = _ORDER_EVENTS[notification.kind]
    serial, info, at = notification.serial, notification.order_info, notification.notification_time
    facts = OrderFacts(
        serial=serial,
        instance_id=info.instance_id,
        slot_id=info.slot_id,
        state=target,
        at=at,
        asin=info.asin,
        quantity=info.quantity,
        unit=info.unit,
        estimated_delivery_date=info.eta,
        placed_at=at if event is OrderEvent.PLACE else None,
    )
    progress = store.order_progress(serial, info.instance_id)
    if _is_stale(progress, target, at):
        logger.info(
            "order notification is not progress: state unchanged",
            extra={"recordedState": progress.state.value if progress else None},
        )
        store.enrich_order(facts)
        return Outcome.STALE

    device = store.get_device(serial, consistent=True)
    is_test = progress.is_test if progress and progress.is_test is not None else None
    if is_test is None and device is not None:
        is_test = device.is_test_device
    change = Change(
        event,
        at,
        instance_id=info.instance_id,
        estimated_delivery_date=info.eta,
        # Test orders on a test device are cancelled by our own test flows: no customer cooldown.
        customer_cancel=not is_test,
    )
    model_id = notification.model_id or (device.model_id if device is not None else None)

    def stock(slot: Slot) -> float:
        # v1 messages name no ASIN: the slot's product is the one ordered
        asin = info.asin or slot.asin
        return shipped_stock(model_id, slot, asin, packs_of(info.quantity, info.unit), is_test=bool(is_test))

    moved = _move_slot(store, serial, info.slot_id, change, stock)
    if moved is _MISSING:
        return _unknown(notification, "no such slot")
    store.record_order(replace(facts, is_test=is_test))
    return Outcome.APPLIED if moved is not None else Outcome.STALE


def _is_stale(progress: OrderProgress | None, target: OrderState, at: datetime) -> bool:
    if progress is None:
        return False
    if progress.delivered:
        return True
    recorded, wanted = RANK[progress.state], RANK[target]
    if recorded != wanted:
        return recorded > wanted
    return progress.last_notification_time is not None and at <= progress.last_notification_time


_MISSING = object()


def _move_slot(
    store: NotificationStore, serial: str, slot_id: str, change: Change, stock: Callable[[Slot], float]
) -> object:
    """The slot after ``change``; None when the change does not apply; ``_MISSING`` without a slot.

    ``stock(slot)`` is what shipping adds to the slot's stock on hand (asked only when it ships)."""
    for _ in range(MAX_SLOT_ATTEMPTS):
        found = store.slot_with_claim_time(serial, slot_id)
        if found is None:
            return _MISSING
        slot, claimed_at = found
        current = slot.order
        if (
            current.state is OrderState.REQUESTED
            and current.instance_id is None
            and claimed_at is not None
            and change.at < claimed_at - CLAIM_CLOCK_SKEW
        ):
            logger.info("order notification predates the slot's current claim: ignored")
            return None
        try:
            new = apply(current, change)
        except InvalidTransition as err:
            logger.info("order notification does not apply to the slot", extra={"reason": err.message})
            return None
        if change.event is OrderEvent.CANCEL and new.instance_id is None:
            new = replace(new, instance_id=change.instance_id)  # remember which order was cancelled
        if new == current:
            return None
        if change.event is OrderEvent.SHIP and current.state is not OrderState.SHIPPED:
            written = store.ship_slot(serial, slot_id, current=current, new=new, quantity=stock(slot))
        else:
            written = store.set_slot_order(serial, slot_id, expected_states={current.state}, new=new)
        if written is not None:
            logger.info(
                "slot order moved", extra={"from": current.state.value, "to": written.order.state.value}
            )
            return written
    raise SlotContention(f"slot {slot_id} of device {serial} kept changing")


# --- subscriptions and the device lifecycle --------------------------------------------------------


def _on_subscription(
    notification: Notification, store: NotificationStore, _tokens: TokenDestroyer
) -> Outcome:
    assert isinstance(notification, SubscriptionChanged)
    serial, at = notification.serial, notification.notification_time
    statuses = notification.subscription_info.slots_subscription_status
    model_id = notification.model_id
    if model_id is None:
        device = store.get_device(serial, consistent=True)
        model_id = device.model_id if device is not None else None
    changed = 0
    for slot_id, status in statuses.items():
        product = status.product
        slot = apply_catalog_subscription(
            store,
            serial,
            slot_id,
            model_id=model_id,
            subscribed=status.subscribed,
            asin=product.asin if product else None,
            product_known=status.product_info_list is not None,
            at=at,
        )
        changed += slot is not None
    return Outcome.APPLIED if changed else Outcome.STALE


def _on_registered(notification: Notification, store: NotificationStore, _tokens: TokenDestroyer) -> Outcome:
    assert isinstance(notification, DeviceRegistered)
    written = store.record_registration(
        notification.serial, model_id=notification.model_id, at=notification.notification_time
    )
    return Outcome.APPLIED if written is Written.APPLIED else Outcome.STALE


def _on_deregistered(notification: Notification, store: NotificationStore, tokens: TokenDestroyer) -> Outcome:
    assert isinstance(notification, DeviceDeregistered)
    written = store.record_deregistration(notification.serial, at=notification.notification_time)
    if written is Written.MISSING:
        # No device item: we never linked it, so there are no tokens of ours to destroy (and a link in
        # progress must keep the ones it just stored).
        return _unknown(notification, "no such device")
    if written is Written.STALE:
        return Outcome.STALE
    # After the status write, so a failure here is retried (the status write repeats harmlessly).
    tokens.destroy(notification.serial)
    return Outcome.APPLIED


def _unknown(notification: Notification, reason: str) -> Outcome:
    logger.warning("notification for an unknown device or slot acknowledged", extra={"reason": reason})
    metrics.add_metric(name=UNKNOWN_DEVICE_METRIC, unit=MetricUnit.Count, value=1)
    return Outcome.UNKNOWN


_HANDLERS: dict[NotificationType, Callable[[Notification, NotificationStore, TokenDestroyer], Outcome]] = {
    OrderPlaced.kind: _on_order,
    ItemShipped.kind: _on_order,
    OrderCancelled.kind: _on_order,
    SubscriptionChanged.kind: _on_subscription,
    DeviceRegistered.kind: _on_registered,
    DeviceDeregistered.kind: _on_deregistered,
}


# --- delivery inference ----------------------------------------------------------------------------


def infer_delivery(order: SlotOrder, now: datetime) -> SlotOrder | None:
    """The slot's order with delivery inferred at ``now``, or None while it is not overdue (pure).

    DRS never says an order was delivered: a placed or shipped order whose estimated delivery date
    plus ``order_lifecycle.DELIVERY_GRACE`` has passed is taken as delivered and the slot returns to
    ``NONE``. (A refill reading is the other signal; the usage path applies it with ``on_refill``.)
    """
    if not delivery_overdue(order, now):
        return None
    return apply(order, Change(OrderEvent.DELIVER, now))


def settle_deliveries(
    serial: str, slots: Iterable[Slot], *, repository: StateRepository, now: datetime | None = None
) -> list[Slot]:
    """Infer delivery for every overdue order among ``slots`` (as just read); return the slots that moved.

    For code that reads a device's slots anyway, e.g. the report worker before its daily ``slotStatus``:
    ``settle_deliveries(serial, slots, repository=repo)``. Each move is a conditional write on the state
    read, so a refill or notification that got there first wins; the order's history is closed
    (``deliveredAt``), which makes any later notification about that order stale.
    """
    moment = now or default_clock().now()
    settled: list[Slot] = []
    for slot in slots:
        delivered = infer_delivery(slot.order, moment)
        if delivered is None:
            continue
        moved = repository.set_slot_order(
            serial, slot.slot_id, expected_states={slot.order.state}, new=delivered
        )
        if moved is None:
            continue
        if slot.order.instance_id:
            mark_order_delivered(repository, serial, slot.slot_id, slot.order.instance_id, moment)
        logger.info(
            "delivery inferred from the estimated delivery date",
            extra={"serial": serial, "slotId": slot.slot_id, "instanceId": slot.order.instance_id},
        )
        metrics.add_metric(name="DeliveryInferred", unit=MetricUnit.Count, value=1)
        settled.append(moved)
    return settled
