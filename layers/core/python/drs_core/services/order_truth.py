"""DRS is the source of truth for orders and subscriptions (docs/architecture.md, "DRS is the truth").

Notifications can be lost, parcels come late, and DRS sends no delivered notification, so what the
backend believes about a slot's order must be checked against DRS, cheaply:

- **ORDER_INPROGRESS re-opens.** A replenish answered ``ORDER_INPROGRESS`` names the slot's open
  order. If the backend knows that order (its history item), even one it settled by assumption, the
  order is re-opened with its recorded state and estimated date (``reopen_order``): its inferred
  delivery is withdrawn, so later notifications about it apply again and a refill delivers it.
- **Every open order has a deadline** (``check_due``): a ``PLACED``/``SHIPPED`` order whose estimated
  delivery date plus ``RECHECK_MARGIN`` has passed, or a ``PLACED`` order with no date (its
  OrderPlaced never came) once ``SILENT_AFTER`` has passed since placement. Past it, the report
  worker's daily visit asks ``getOrderInfo`` and sets the slot from the answer (``reconcile_orders``):
  delivered → the slot is free; cancelled → cancelled; shipped or still processing → kept open with
  DRS's date, checked again on the next visit while it stays overdue. One call per overdue order and
  day at most; an order DRS does not know (404) is closed, since DRS keeps no open order the device
  cannot see. DRS documents only ``Processing`` and ``Pending``: an order it still calls open
  ``GIVE_UP_AFTER`` past its date is taken as delivered, which bounds the calls and is safe, since an
  ``ORDER_INPROGRESS`` re-opens it if DRS still has it open.
- **Subscriptions are re-read** (``resync_subscription``) when DRS refuses a call for a slot (unknown
  or unsubscribed), so a lost SubscriptionChanged cannot leave a slot wrong for ever; otherwise at most
  weekly (``SUBSCRIPTION_REREAD``) while the device has a slot we hold unsubscribed (a product the
  customer picked whose notification was lost leaves exactly that), and every
  ``SUBSCRIPTION_CHECK`` for the rest, which keeps the daily visit within its DRS call budget (a
  changed product on a subscribed slot still orders right: DRS orders what the customer picked). The
  read is recorded as of the time it was made, so an older SubscriptionChanged arriving later stays
  stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from aws_lambda_powertools.metrics import MetricUnit

from drs_core import schema
from drs_core.adapters.drs_client import OrderInfo, OrderItem, SubscriptionInfo
from drs_core.adapters.items import Attr, Refused, TableGateway, UpdateBuilder, order_from_item
from drs_core.adapters.notification_store import (
    NotificationStore,
    OrderFacts,
    mark_order_delivered,
)
from drs_core.adapters.state_repository import StateRepository
from drs_core.domain.models import Order, OrderState, Slot, SlotOrder
from drs_core.domain.order_lifecycle import Change, OrderEvent, apply
from drs_core.errors import DrsNotFound, InvalidTransition
from drs_core.observability import logger, metrics
from drs_core.services.slot_stock import apply_catalog_subscription, shipped_stock

# How long past its estimated delivery date an open order waits before DRS is asked about it.
RECHECK_MARGIN = timedelta(days=1)
# How long a PLACED order may go without an estimated date (no OrderPlaced seen) before DRS is asked.
SILENT_AFTER = timedelta(days=1)
# An order DRS still calls open this long past its estimated date is taken as delivered.
GIVE_UP_AFTER = timedelta(days=14)
# How often a device's subscription is re-read: weekly while one of its slots is unsubscribed, else
# monthly (each read is a DRS call of the daily visit's budget).
SUBSCRIPTION_REREAD = timedelta(days=7)
SUBSCRIPTION_CHECK = timedelta(days=30)

CHECKED_STATES = frozenset({OrderState.PLACED, OrderState.SHIPPED})
DELIVERED_STATUSES = frozenset({"delivered"})
CANCELLED_STATUSES = frozenset({"cancelled", "canceled"})
SHIPPED_STATUSES = frozenset({"shipped"})
SHIPPED_OR_DELIVERED = SHIPPED_STATUSES | DELIVERED_STATUSES

# Looks an order up in DRS (``getOrderInfo`` with the device's token).
OrderLookup = Callable[[str], OrderInfo]


# --- ORDER_INPROGRESS ------------------------------------------------------------------------------


def reopen_order(gateway: TableGateway, serial: str, instance_id: str) -> Order | None:
    """The order's history, re-opened (an inferred delivery withdrawn), or None if we never knew it."""
    update = UpdateBuilder()
    update.remove(Attr.DELIVERED_AT)
    item = gateway.conditional_update(
        schema.order_key(serial, instance_id), update, f"attribute_exists({update.name(schema.STATE_PK)})"
    )
    if isinstance(item, Refused):
        return None
    return order_from_item(item)


def in_progress_order(claimed: SlotOrder, instance_id: str, known: Order | None, now: datetime) -> SlotOrder:
    """The slot's order after ``ORDER_INPROGRESS`` named ``instance_id``: the known order with its state
    and date, else a PLACED order with no date (``reconcile_orders`` asks DRS about it within a day)."""
    eta = known.estimated_delivery_date if known is not None else None
    placed = apply(
        claimed, Change(OrderEvent.PLACE, now, instance_id=instance_id, estimated_delivery_date=eta)
    )
    if known is not None and known.state is OrderState.SHIPPED:
        return replace(placed, state=OrderState.SHIPPED)
    return placed


# --- reconciliation --------------------------------------------------------------------------------


def check_due(order: SlotOrder, placed_at: datetime | None, now: datetime) -> bool:
    """Whether the slot's open order is past its deadline and DRS should be asked about it."""
    if order.state not in CHECKED_STATES or not order.instance_id:
        return False
    if order.estimated_delivery_date is not None:
        return now >= order.estimated_delivery_date + RECHECK_MARGIN
    return order.state is OrderState.SHIPPED or placed_at is None or now >= placed_at + SILENT_AFTER


def reconcile_orders(
    serial: str,
    slots: Iterable[Slot],
    *,
    repository: StateRepository,
    lookup: OrderLookup,
    now: datetime,
    is_test_device: bool = False,
    model_id: str | None = None,
) -> list[Slot]:
    """Ask DRS about every overdue open order among ``slots`` and set each slot from the answer
    (``model_id``: the device's, for the units of a shipment learnt here).

    Returns the slots that moved. DRS trouble (retryable errors, a token problem) is raised to the
    caller; an order DRS does not know is closed.
    """
    moved: list[Slot] = []
    for slot in slots:
        order = slot.order
        if order.state not in CHECKED_STATES or not order.instance_id:
            continue
        placed_at = None
        if order.estimated_delivery_date is None:
            history = repository.get_order(serial, order.instance_id)
            placed_at = history.placed_at if history is not None else None
        if not check_due(order, placed_at, now):
            continue
        metrics.add_metric(name="OrdersReconciled", unit=MetricUnit.Count, value=1)
        try:
            item = _item_for(lookup(order.instance_id), slot.slot_id)
        except DrsNotFound:
            logger.warning(
                "DRS does not know the open order: closed", extra={"instanceId": order.instance_id}
            )
            item = None
        written = _apply_answer(
            serial, slot, item, repository=repository, now=now, is_test=is_test_device, model_id=model_id
        )
        if written is not None:
            moved.append(written)
    return moved


def _item_for(info: OrderInfo, slot_id: str) -> OrderItem | None:
    return next((item for item in info.items if item.slot_id == slot_id), None) or next(
        iter(info.items), None
    )


def _apply_answer(
    serial: str,
    slot: Slot,
    item: OrderItem | None,
    *,
    repository: StateRepository,
    now: datetime,
    is_test: bool,
    model_id: str | None = None,
) -> Slot | None:
    current = slot.order
    status = item.status.strip().lower() if item is not None else "delivered"
    eta = item.expected_delivery_date if item is not None else None
    if item is not None and current.state is OrderState.PLACED and status in SHIPPED_OR_DELIVERED:
        # DRS says the parcel left, and we never heard (ItemShipped lost): record the shipment as that
        # notification would have, stock on hand included, or the slot would be ordered again while
        # the customer still has the package to load.
        shipped = _record_missed_shipment(
            serial, slot, item, repository=repository, now=now, model_id=model_id, is_test=is_test
        )
        if shipped is None:
            return None
        slot, current = shipped, shipped.order
        if status in SHIPPED_STATUSES:
            return shipped
    try:
        if status in DELIVERED_STATUSES:
            new = apply(current, Change(OrderEvent.DELIVER, now))
        elif status in CANCELLED_STATUSES:
            new = apply(current, Change(OrderEvent.CANCEL, now, customer_cancel=not is_test))
            new = replace(new, instance_id=current.instance_id)
        elif status in SHIPPED_STATUSES:
            new = apply(
                current,
                Change(OrderEvent.SHIP, now, instance_id=current.instance_id, estimated_delivery_date=eta),
            )
        else:
            # Still open on DRS's side (processing, pending, or a status we do not know): keep it open
            # with DRS's date; the next visit asks again while it stays overdue.
            new = replace(current, estimated_delivery_date=eta or current.estimated_delivery_date)
        due = new.estimated_delivery_date
        if new.state in CHECKED_STATES and due is not None and now >= due + GIVE_UP_AFTER:
            logger.warning("order still open at DRS long after its date: taken as delivered")
            new = apply(new, Change(OrderEvent.DELIVER, now))
    except InvalidTransition as err:
        logger.info("DRS's order state does not apply to the slot", extra={"reason": err.message})
        return None
    logger.info(
        "open order checked with DRS",
        extra={"instanceId": current.instance_id, "drsStatus": status, "to": new.state.value},
    )
    if new == current:
        return None
    written = repository.set_slot_order(serial, slot.slot_id, expected_states={current.state}, new=new)
    if written is not None and new.state is OrderState.NONE and current.instance_id:
        mark_order_delivered(repository, serial, slot.slot_id, current.instance_id, now)
    return written


def _record_missed_shipment(
    serial: str,
    slot: Slot,
    item: OrderItem,
    *,
    repository: StateRepository,
    now: datetime,
    model_id: str | None,
    is_test: bool,
) -> Slot | None:
    """The slot moved to SHIPPED with the order's packs added to stock on hand in the slot's unit (one
    guarded write, as for ItemShipped), and the order's history marked shipped; None if the slot moved
    meanwhile. getOrderInfo's ``quantity`` counts packs of ``asin``."""
    current = slot.order
    change = Change(
        OrderEvent.SHIP,
        now,
        instance_id=current.instance_id,
        estimated_delivery_date=item.expected_delivery_date,
    )
    store = notification_store(repository)
    written = store.ship_slot(
        serial,
        slot.slot_id,
        current=current,
        new=apply(current, change),
        quantity=shipped_stock(
            model_id, slot, item.asin or slot.asin, float(item.quantity or 1), is_test=is_test
        ),
    )
    if written is not None and current.instance_id:
        store.record_order(
            OrderFacts(
                serial=serial,
                instance_id=current.instance_id,
                slot_id=slot.slot_id,
                state=OrderState.SHIPPED,
                at=now,
                asin=item.asin or None,
                quantity=float(item.quantity) if item.quantity else None,
                estimated_delivery_date=item.expected_delivery_date,
            )
        )
    return written


# --- subscriptions ---------------------------------------------------------------------------------


def subscription_reread_due(
    last_read_at: datetime | None, linked_at: datetime | None, slots: Iterable[Slot], now: datetime
) -> bool:
    """Whether the device's subscription should be read again (linking reads it first)."""
    since = last_read_at or linked_at
    if since is None:
        return True
    period = SUBSCRIPTION_REREAD if any(not slot.subscribed for slot in slots) else SUBSCRIPTION_CHECK
    return now >= since + period


def resync_subscription(
    serial: str,
    slots: Iterable[Slot],
    info: SubscriptionInfo,
    *,
    store: NotificationStore,
    now: datetime,
    model_id: str | None = None,
) -> int:
    """Set the device's slots from a ``subscriptionInfo`` answer read at ``now``; how many changed. As
    for SubscriptionChanged, a slot's unit and full quantity are the model catalog's (``model_id``).

    A slot the answer lists is written only when its subscription or product differs; a slot we hold
    that DRS no longer lists is unsubscribed.
    """
    held = {slot.slot_id: slot for slot in slots}
    changed = 0
    for slot_id, status in info.slots.items():
        product = status.products[0] if status.products else None
        slot = held.get(slot_id)
        if (
            slot is not None
            and slot.subscribed == status.subscribed
            and slot.asin == (product.asin if product else None)
        ):
            continue
        written = apply_catalog_subscription(
            store,
            serial,
            slot_id,
            model_id=model_id,
            subscribed=status.subscribed,
            asin=product.asin if product else None,
            product_known=True,
            at=now,
        )
        changed += written is not None
    for slot_id, slot in held.items():
        if slot_id not in info.slots and slot.subscribed:
            written = store.apply_subscription(
                serial, slot_id, subscribed=False, product=None, product_known=False, at=now
            )
            changed += written is not None
    if changed:
        logger.warning("subscription re-read from DRS changed slots", extra={"changed": changed})
        metrics.add_metric(name="SubscriptionResynced", unit=MetricUnit.Count, value=changed)
    return changed


def notification_store(repository: StateRepository) -> NotificationStore:
    """A ``NotificationStore`` on the same table and client as ``repository``."""
    if isinstance(repository, NotificationStore):
        return repository
    return NotificationStore(repository._table_name, dynamodb=repository.client)
