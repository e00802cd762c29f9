"""State-table writes for DRS notifications: each one conditional, so a duplicate or stale notification
changes nothing.

``NotificationStore`` extends ``StateRepository`` (the service needs one adapter) with:

- the **order history guard** on ``ORDER#<instanceId>``: ``orderState`` (its rank in
  ``order_lifecycle.RANK``) and ``lastNotificationTime`` only move forward (higher rank, or the same
  rank and a newer time), and never after ``deliveredAt`` closed the order;
- **shipping** as one write: the slot's move to ``SHIPPED`` and the ``ADD`` of the shipped quantity to
  stock on hand happen together or not at all, so a duplicate cannot add twice;
- **subscription, registration and deregistration** guarded by the time of the last notification of
  that kind applied to the item (``subscriptionNotificationTime`` per slot, ``registered…`` /
  ``deregisteredNotificationTime`` on the device), so a stale message never undoes a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from drs_core import schema
from drs_core.adapters.items import (
    Attr,
    Refused,
    TableGateway,
    UpdateBuilder,
    get_bool,
    get_str,
    get_time,
    key_item,
    num_av,
    opt_str_av,
    policy_attributes,
    slot_from_item,
    slot_order_attributes,
    str_av,
    time_av,
)
from drs_core.adapters.state_repository import StateRepository, slot_link_writes
from drs_core.clock import to_iso
from drs_core.domain.models import DeviceStatus, OrderState, Slot, SlotOrder, SlotPolicy
from drs_core.domain.order_lifecycle import RANK
from drs_core.observability import logger


@dataclass(frozen=True, slots=True)
class OrderProgress:
    """How far an order's history has got (``ORDER#`` item)."""

    state: OrderState
    last_notification_time: datetime | None
    delivered: bool
    is_test: bool | None


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What one order notification tells about its order (None: not told)."""

    serial: str
    instance_id: str
    slot_id: str
    state: OrderState
    at: datetime  # notificationTime
    asin: str | None = None
    quantity: float | None = None
    unit: str | None = None
    estimated_delivery_date: datetime | None = None
    placed_at: datetime | None = None
    is_test: bool | None = None


@dataclass(frozen=True, slots=True)
class ProductChoice:
    """The product a customer picked for a slot (``productInfoList[0]`` of a v2 SubscriptionChanged)."""

    asin: str | None
    quantity: float | None
    unit: str | None


class Written(StrEnum):
    APPLIED = "applied"
    STALE = "stale"
    MISSING = "missing"


class NotificationStore(StateRepository):
    """The state table, with the guarded writes DRS notifications need."""

    # --- orders ----------------------------------------------------------------------------------

    def order_progress(self, serial: str, instance_id: str) -> OrderProgress | None:
        """The order's recorded progress (consistent read), or None if it has no history yet."""
        item = self._get(schema.order_key(serial, instance_id))
        if item is None:
            return None
        return OrderProgress(
            state=OrderState(get_str(item, Attr.ORDER_STATE) or OrderState.NONE.value),
            last_notification_time=get_time(item, Attr.LAST_NOTIFICATION),
            delivered=Attr.DELIVERED_AT in item,
            is_test=get_bool(item, Attr.IS_TEST_ORDER, False) if Attr.IS_TEST_ORDER in item else None,
        )

    def record_order(self, facts: OrderFacts) -> bool:
        """Move the order's history to ``facts.state`` at ``facts.at`` if that is progress; False if not.

        Progress: no history yet, or a lower rank, or the same rank with an older (or no) notification
        time, and the order not closed by an inferred delivery.
        """
        update = UpdateBuilder()
        update.set(Attr.ORDER_STATE, str_av(facts.state.value))
        update.set(Attr.LAST_NOTIFICATION, time_av(facts.at))
        update.set(Attr.SLOT_ID, str_av(facts.slot_id))
        self._set_known_facts(update, facts)
        rank = RANK[facts.state]
        state, last = update.name(Attr.ORDER_STATE), update.name(Attr.LAST_NOTIFICATION)
        lower = [str_av(s.value) for s, r in RANK.items() if r < rank]
        same = [str_av(s.value) for s, r in RANK.items() if r == rank]
        at = update.value(str_av(to_iso(facts.at)))
        condition = (
            f"attribute_not_exists({update.name(schema.STATE_PK)}) OR ("
            f"attribute_not_exists({update.name(Attr.DELIVERED_AT)}) AND ("
            f"attribute_not_exists({state})"
            f" OR {update.is_in(Attr.ORDER_STATE, lower)}"
            f" OR ({update.is_in(Attr.ORDER_STATE, same)}"
            f" AND (attribute_not_exists({last}) OR {last} < {at}))))"
        )
        return not isinstance(
            self.conditional_update(schema.order_key(facts.serial, facts.instance_id), update, condition),
            Refused,
        )

    def enrich_order(self, facts: OrderFacts) -> None:
        """Fill in what the history does not know yet (a late OrderPlaced's ASIN, placement time...),
        never changing its state or anything it knows."""
        update = UpdateBuilder()
        update.set_if_absent(Attr.SLOT_ID, str_av(facts.slot_id))
        for attribute, value in self._facts(facts).items():
            if value is not None:
                update.set_if_absent(attribute, value)
        self.conditional_update(
            schema.order_key(facts.serial, facts.instance_id),
            update,
            f"attribute_exists({update.name(schema.STATE_PK)})",
        )

    def _set_known_facts(self, update: UpdateBuilder, facts: OrderFacts) -> None:
        for attribute, value in self._facts(facts).items():
            if value is None:
                continue
            # The first placement time and the test flag never change; the rest follows the newest news.
            if attribute in (Attr.PLACED_AT, Attr.IS_TEST_ORDER):
                update.set_if_absent(attribute, value)
            else:
                update.set(attribute, value)

    @staticmethod
    def _facts(facts: OrderFacts) -> dict[str, dict | None]:
        return {
            Attr.ASIN: opt_str_av(facts.asin),
            Attr.QUANTITY: num_av(facts.quantity) if facts.quantity is not None else None,
            Attr.UNIT: opt_str_av(facts.unit),
            Attr.DELIVERY_DATE: time_av(facts.estimated_delivery_date),
            Attr.PLACED_AT: time_av(facts.placed_at),
            Attr.IS_TEST_ORDER: {"BOOL": facts.is_test} if facts.is_test is not None else None,
        }

    # --- slots -----------------------------------------------------------------------------------

    def slot_with_claim_time(self, serial: str, slot_id: str) -> tuple[Slot, datetime | None] | None:
        """The slot (consistent read) and when its current claim was taken, or None if there is no slot."""
        item = self._get(schema.slot_key(serial, slot_id))
        if item is None:
            return None
        return slot_from_item(item), get_time(item, Attr.ORDER_REQUESTED_AT)

    def ship_slot(
        self, serial: str, slot_id: str, *, current: SlotOrder, new: SlotOrder, quantity: float
    ) -> Slot | None:
        """Replace the slot's order side with ``new`` (SHIPPED) and add ``quantity`` to stock on hand, in
        one write, if the slot's order is still ``current`` (state and instance id); None otherwise."""
        update = UpdateBuilder()
        for attribute, value in slot_order_attributes(new).items():
            update.set(attribute, value)
        update.remove(Attr.ORDER_REQUESTED_AT)
        if quantity:
            update.add(Attr.ON_HAND_QTY, num_av(quantity))
        update.bump_version()
        instance = update.name(Attr.ORDER_INSTANCE)
        same_instance = (
            f"attribute_not_exists({instance})"
            if current.instance_id is None
            else f"{instance} = {update.value(str_av(current.instance_id))}"
        )
        condition = (
            f"attribute_exists({update.name(schema.STATE_PK)})"
            f" AND {update.name(Attr.ORDER_STATE)} = {update.value(str_av(current.state.value))}"
            f" AND {same_instance}"
        )
        item = self.conditional_update(schema.slot_key(serial, slot_id), update, condition)
        return None if isinstance(item, Refused) else slot_from_item(item)

    def apply_subscription(
        self,
        serial: str,
        slot_id: str,
        *,
        subscribed: bool,
        product: ProductChoice | None,
        product_known: bool,
        at: datetime,
        default_policy: SlotPolicy | None = None,
        full_quantity: float | None = None,
        unit: str | None = None,
    ) -> Slot | None:
        """Record a slot's subscription as of ``at`` unless a newer one was recorded; None if stale.

        ``product_known`` False (v1 messages, or a slot the message left out) leaves the stored product
        alone; otherwise ``product`` None clears it. ``full_quantity`` and ``unit`` (the model catalog's)
        set the slot's full quantity and unit; None leaves them as they are. A new slot starts like
        ``upsert_subscription``'s: zeroed counters, no order, the default policy.
        """
        update = UpdateBuilder()
        update.set(Attr.SUBSCRIBED, {"BOOL": subscribed})
        update.set(Attr.SUBSCRIPTION_NOTIFICATION, time_av(at))
        original_set = False
        if product_known:
            update.set(Attr.ASIN, opt_str_av(product.asin) if product else None)
            if product is not None and product.quantity is not None and full_quantity is None:
                update.set(Attr.ORIGINAL_QTY, num_av(product.quantity))
                original_set = True
            if product is not None and product.unit and unit is None:
                update.set(Attr.UNIT, str_av(product.unit))
        if full_quantity is not None:
            update.set(Attr.ORIGINAL_QTY, num_av(full_quantity))
            original_set = True
        if unit is not None:
            update.set(Attr.UNIT, str_av(unit))
        if not original_set:
            update.set_if_absent(Attr.ORIGINAL_QTY, num_av(0))
        update.set_if_absent(Attr.REMAINING_QTY, num_av(0))
        update.set_if_absent(Attr.ON_HAND_QTY, num_av(0))
        update.set_if_absent(Attr.ORDER_STATE, str_av(OrderState.NONE.value))
        update.set_if_absent(Attr.CANCELS, num_av(0))
        for attribute, value in policy_attributes(default_policy or SlotPolicy()).items():
            update.set_if_absent(attribute, value)
        update.bump_version()
        last = update.name(Attr.SUBSCRIPTION_NOTIFICATION)
        # "<=": the same message again re-applies (harmless), so a retry after a partial failure completes.
        condition = f"attribute_not_exists({last}) OR {last} <= {update.value(str_av(to_iso(at)))}"
        item = self.conditional_update(schema.slot_key(serial, slot_id), update, condition)
        if isinstance(item, Refused):
            logger.info(
                "stale subscription change ignored",
                extra={
                    "serial": serial,
                    "slotId": slot_id,
                    "recorded": item.attribute(Attr.SUBSCRIPTION_NOTIFICATION),
                },
            )
            return None
        return slot_from_item(item)

    # --- devices ---------------------------------------------------------------------------------

    def record_registration(self, serial: str, *, model_id: str | None, at: datetime) -> Written:
        """Note that DRS registered the device at ``at``.

        A device we do not know yet is created without owner or tokens and as not linked
        (``DEREGISTERED``), so linking takes it over; a known device keeps its owner, credential and
        status: linking, not DRS registration, makes a device ours.
        """
        update = UpdateBuilder()
        if model_id:
            update.set_if_absent(Attr.MODEL_ID, str_av(model_id))
        update.set_if_absent(Attr.STATUS, str_av(DeviceStatus.DEREGISTERED.value))
        update.set(Attr.REGISTERED_NOTIFICATION, time_av(at))
        update.bump_version()
        last = update.name(Attr.REGISTERED_NOTIFICATION)
        condition = f"attribute_not_exists({last}) OR {last} <= {update.value(str_av(to_iso(at)))}"
        item = self.conditional_update(schema.device_key(serial), update, condition)
        return Written.STALE if isinstance(item, Refused) else Written.APPLIED

    def record_deregistration(self, serial: str, *, at: datetime) -> Written:
        """Mark the device ``DEREGISTERED`` as of ``at`` and end its link: the link id leaves the device
        and every slot in the same transaction, so the device credential is refused at once.

        STALE when the device was linked at or after ``at`` (the message is about an earlier
        registration: re-linking a serial makes DRS deregister the previous registration first) or a
        later deregistration was recorded; MISSING when there is no device item.
        """
        update = UpdateBuilder()
        update.set(Attr.STATUS, str_av(DeviceStatus.DEREGISTERED.value))
        update.set(Attr.DEREGISTERED_NOTIFICATION, time_av(at))
        update.remove(Attr.LINK_ID)
        update.bump_version()
        at_value = update.value(str_av(to_iso(at)))
        linked, last = update.name(Attr.LINKED_AT), update.name(Attr.DEREGISTERED_NOTIFICATION)
        condition = (
            f"attribute_exists({update.name(schema.STATE_PK)})"
            f" AND (attribute_not_exists({linked}) OR {linked} < {at_value})"
            f" AND (attribute_not_exists({last}) OR {last} <= {at_value})"
        )
        writes = [(schema.device_key(serial), update, condition), *slot_link_writes(self, serial, None)]
        item = self.transact_updates(writes)
        if isinstance(item, Refused):
            if item.item is None:
                return Written.MISSING
            logger.info(
                "stale deregistration ignored",
                extra={"serial": serial, "linkedAt": item.attribute(Attr.LINKED_AT)},
            )
            return Written.STALE
        return Written.APPLIED

    def _get(self, key: dict[str, str]) -> dict | None:
        # Consistent: the notification just before this one may have written the item a moment ago.
        answer = self._dynamodb.get_item(TableName=self._table_name, Key=key_item(key), ConsistentRead=True)
        return answer.get("Item")


def mark_order_delivered(
    gateway: TableGateway, serial: str, slot_id: str, instance_id: str, at: datetime
) -> bool:
    """Close the order's history as delivered (inferred) at ``at``; False if it was closed already.

    Creates the history item if the order has none, so a notification about it arriving later is stale.
    """
    update = UpdateBuilder()
    update.set(Attr.DELIVERED_AT, time_av(at))
    update.set_if_absent(Attr.SLOT_ID, str_av(slot_id))
    condition = f"attribute_not_exists({update.name(Attr.DELIVERED_AT)})"
    return not isinstance(
        gateway.conditional_update(schema.order_key(serial, instance_id), update, condition), Refused
    )


def mark_order_cancelled(gateway: TableGateway, serial: str, slot_id: str, instance_id: str) -> bool:
    """Record in the order's history that it was cancelled (cancel-test-order answered
    ``NO_ORDER_IN_PROGRESS``); False if it was already cancelled or closed as delivered.

    No ``lastNotificationTime`` is written: this is not a notification, and an ``OrderCancelled`` that
    may still come finds the order cancelled and moves nothing.
    """
    update = UpdateBuilder()
    update.set(Attr.ORDER_STATE, str_av(OrderState.CANCELLED.value))
    update.set_if_absent(Attr.SLOT_ID, str_av(slot_id))
    update.set_if_absent(Attr.IS_TEST_ORDER, {"BOOL": True})
    state = update.name(Attr.ORDER_STATE)
    cancelled = update.value(str_av(OrderState.CANCELLED.value))
    condition = (
        f"attribute_not_exists({update.name(Attr.DELIVERED_AT)})"
        f" AND (attribute_not_exists({state}) OR {state} <> {cancelled})"
    )
    return not isinstance(
        gateway.conditional_update(schema.order_key(serial, instance_id), update, condition), Refused
    )
