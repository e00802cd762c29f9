"""The state table: devices, slots and orders as domain models, with every guarded move a single write.

Layout (``drs_core.schema``): one partition per device, ``pk = DEVICE#<serial>``; the device item
(``sk = DEVICE``), one item per slot (``sk = SLOT#<slotId>``) and the order history
(``sk = ORDER#<instanceId>``). Transitions that decide correctness (claiming a slot for an order,
order-state moves, linking) are conditional writes returning the new item (``ALL_NEW``), so callers
never read-then-write. Numbers travel as DynamoDB strings built from ``Decimal``; times as ISO-8601
strings (``drs_core.clock.to_iso``), which sort chronologically, so conditions compare them directly.
"""

from __future__ import annotations

from datetime import datetime

from drs_core import schema
from drs_core.adapters.items import (
    Attr,
    Refused,
    TableGateway,
    UpdateBuilder,
    device_attributes,
    device_from_item,
    device_item,
    key_item,
    num_av,
    order_from_item,
    order_item,
    policy_attributes,
    slot_from_item,
    slot_order_attributes,
    str_av,
)
from drs_core.clock import to_iso
from drs_core.domain.models import (
    Device,
    DeviceStatus,
    Order,
    OrderState,
    Slot,
    SlotOrder,
    SlotPolicy,
)
from drs_core.domain.reorder_policy import MAX_CANCELS_BEFORE_REFILL
from drs_core.errors import DeviceAlreadyLinked, SlotNotFound
from drs_core.observability import logger


def slot_link_writes(
    gateway: TableGateway, serial: str, link_id: str | None
) -> list[tuple[dict[str, str], UpdateBuilder, str]]:
    """Transaction writes that set (or, for None, remove) ``linkId`` on every existing slot of a device."""
    writes = []
    for key in gateway.slot_keys(serial):
        stamp = UpdateBuilder()
        stamp.set(Attr.LINK_ID, str_av(link_id) if link_id is not None else None)
        stamp.bump_version()
        writes.append((key, stamp, f"attribute_exists({stamp.name(schema.STATE_PK)})"))
    return writes


class StateRepository(TableGateway):
    """Reads and guarded writes of the state table, in domain models."""

    # --- devices ---------------------------------------------------------------------------------

    def put_device(self, device: Device) -> None:
        """Write the device item exactly as given (no condition)."""
        self._dynamodb.put_item(TableName=self._table_name, Item=device_item(device))

    def get_device(self, serial: str, *, consistent: bool = False) -> Device | None:
        """The device, or None if it was never stored."""
        answer = self._dynamodb.get_item(
            TableName=self._table_name, Key=key_item(schema.device_key(serial)), ConsistentRead=consistent
        )
        item = answer.get("Item")
        return device_from_item(item) if item else None

    def get_device_with_slots(
        self, serial: str, *, consistent: bool = False
    ) -> tuple[Device, list[Slot]] | None:
        """The device and its slots (sorted by slot id) from one Query; None if there is no device item."""
        device: Device | None = None
        slots: list[Slot] = []
        pages = self.query(
            KeyConditionExpression="#pk = :pk",
            # Order history shares the partition; it is read (and paid for) but not returned.
            FilterExpression="NOT begins_with(#sk, :order)",
            ExpressionAttributeNames={"#pk": schema.STATE_PK, "#sk": schema.STATE_SK},
            ExpressionAttributeValues={
                ":pk": {"S": schema.device_pk(serial)},
                ":order": {"S": schema.ORDER_PREFIX},
            },
            ConsistentRead=consistent,
        )
        for item in pages:
            sort_key = item[schema.STATE_SK]["S"]
            if sort_key == schema.DEVICE_SK:
                device = device_from_item(item)
            elif sort_key.startswith(schema.SLOT_PREFIX):
                slots.append(slot_from_item(item))
        if device is None:
            return None
        return device, sorted(slots, key=lambda slot: slot.slot_id)

    def list_devices_by_owner(self, owner_id: str) -> list[Device]:
        """Every device linked to ``owner_id`` (the sparse ``owner`` index holds device items only)."""
        pages = self.query(
            IndexName=schema.OWNER_INDEX,
            KeyConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#owner": schema.OWNER_INDEX_PK},
            ExpressionAttributeValues={":owner": {"S": owner_id}},
        )
        return [device_from_item(item) for item in pages]

    def set_device_status(
        self, serial: str, status: DeviceStatus, *, expected: set[DeviceStatus] | None = None
    ) -> Device | None:
        """Set the status; None when the device is missing or its status is not in ``expected``."""
        if expected is not None and not expected:
            raise ValueError("expected must name at least one status, or be None")
        update = UpdateBuilder()
        update.set(Attr.STATUS, str_av(status.value))
        update.bump_version()
        condition = f"attribute_exists({update.name(schema.STATE_PK)})"
        if expected is not None:
            condition += f" AND {update.is_in(Attr.STATUS, [str_av(state.value) for state in expected])}"
        item = self.conditional_update(schema.device_key(serial), update, condition)
        if isinstance(item, Refused):
            logger.info(
                "device status change refused",
                extra={"serial": serial, "wanted": status.value, "current": item.attribute(Attr.STATUS)},
            )
            return None
        return device_from_item(item)

    def link_device(self, device: Device, *, owner_id: str) -> Device:
        """Create the device item or re-link it to ``owner_id``; raise ``DeviceAlreadyLinked`` otherwise.

        Allowed when the device is new, has no owner yet (a ``DeviceRegisteredNotification`` may create
        the item before the app finishes linking), is already the same owner's (re-link rotates
        credentials), or deregistered (a new customer may take it). The device item is written as given,
        and in the same transaction every existing slot takes the new ``link_id``: from that write on, a
        credential of an earlier link is refused by the usage write even while API Gateway still caches
        its authorizer's answer.
        """
        update = UpdateBuilder()
        for attribute, value in {**device_attributes(device), Attr.OWNER_ID: str_av(owner_id)}.items():
            update.set(attribute, value)
        update.bump_version()
        condition = (
            f"attribute_not_exists({update.name(schema.STATE_PK)})"
            f" OR attribute_not_exists({update.name(Attr.OWNER_ID)})"
            f" OR {update.name(Attr.OWNER_ID)} = {update.value(str_av(owner_id))}"
            f" OR {update.name(Attr.STATUS)} = {update.value(str_av(DeviceStatus.DEREGISTERED.value))}"
        )
        stamps = slot_link_writes(self, device.serial, device.link_id)
        refused = self.transact_updates([(schema.device_key(device.serial), update, condition), *stamps])
        if refused is not None:
            logger.info("link refused: device linked to another account", extra={"serial": device.serial})
            raise DeviceAlreadyLinked(f"device {device.serial} is linked to another account")
        linked = self.get_device(device.serial, consistent=True)
        assert linked is not None  # written just now
        return linked

    def unlink_device(self, serial: str) -> Device | None:
        """Mark the device ``DEREGISTERED`` and take the link id off it and every slot, in one transaction.

        The device authorizer refuses a deregistered device, and the usage write a slot without the
        credential's link id, so the device credential stops working at once. None if there is no
        device item.
        """
        update = UpdateBuilder()
        update.set(Attr.STATUS, str_av(DeviceStatus.DEREGISTERED.value))
        update.remove(Attr.LINK_ID)
        update.bump_version()
        condition = f"attribute_exists({update.name(schema.STATE_PK)})"
        stamps = slot_link_writes(self, serial, None)
        if self.transact_updates([(schema.device_key(serial), update, condition), *stamps]) is not None:
            return None
        return self.get_device(serial, consistent=True)

    # --- slots -----------------------------------------------------------------------------------

    def get_slot(self, serial: str, slot_id: str, *, consistent: bool = False) -> Slot | None:
        """One slot, or None."""
        answer = self._dynamodb.get_item(
            TableName=self._table_name,
            Key=key_item(schema.slot_key(serial, slot_id)),
            ConsistentRead=consistent,
        )
        item = answer.get("Item")
        return slot_from_item(item) if item else None

    def upsert_subscription(
        self,
        serial: str,
        slot_id: str,
        *,
        subscribed: bool,
        asin: str | None,
        quantity: float | None,
        unit: str | None,
        default_policy: SlotPolicy | None = None,
        link_id: str | None = None,
    ) -> Slot:
        """Record the slot's subscription (DRS ``subscriptionInfo`` / SubscriptionChanged).

        ``link_id`` (linking) stamps the slot with the current link, so the device credential of that
        link may write its readings.

        A new slot starts with zeroed counters, no order and ``default_policy`` (the model's, else
        ``SlotPolicy()``); an existing slot keeps its counters, order state and policy. ``asin`` None
        clears the product; ``quantity`` (the package size, stored as ``originalQuantity``) and ``unit``
        None leave the stored values alone.
        """
        policy = default_policy or SlotPolicy()
        update = UpdateBuilder()
        update.set(Attr.SUBSCRIBED, {"BOOL": subscribed})
        update.set(Attr.ASIN, str_av(asin) if asin is not None else None)
        if link_id is not None:
            update.set(Attr.LINK_ID, str_av(link_id))
        if quantity is not None:
            update.set(Attr.ORIGINAL_QTY, num_av(quantity))
        if unit is not None:
            update.set(Attr.UNIT, str_av(unit))
        if quantity is None:
            update.set_if_absent(Attr.ORIGINAL_QTY, num_av(0))
        update.set_if_absent(Attr.REMAINING_QTY, num_av(0))
        update.set_if_absent(Attr.ON_HAND_QTY, num_av(0))
        update.set_if_absent(Attr.ORDER_STATE, str_av(OrderState.NONE.value))
        update.set_if_absent(Attr.CANCELS, num_av(0))
        for attribute, value in policy_attributes(policy).items():
            update.set_if_absent(attribute, value)
        update.bump_version()
        item = self.update(schema.slot_key(serial, slot_id), update)
        return slot_from_item(item)

    def add_on_hand(self, serial: str, slot_id: str, quantity: float) -> Slot:
        """Add ``quantity`` (negative to take away) to the stock shipped but not yet loaded."""
        update = UpdateBuilder()
        update.add(Attr.ON_HAND_QTY, num_av(quantity))
        update.bump_version()
        item = self.conditional_update(
            schema.slot_key(serial, slot_id), update, f"attribute_exists({update.name(schema.STATE_PK)})"
        )
        if isinstance(item, Refused):
            raise SlotNotFound(f"slot {slot_id} of device {serial} not found")
        return slot_from_item(item)

    def update_policy(self, serial: str, slot_id: str, policy: SlotPolicy) -> Slot:
        """Replace the slot's reorder policy; raise ``SlotNotFound`` if the slot does not exist."""
        update = UpdateBuilder()
        for attribute, value in policy_attributes(policy).items():
            update.set(attribute, value)
        update.bump_version()
        item = self.conditional_update(
            schema.slot_key(serial, slot_id), update, f"attribute_exists({update.name(schema.STATE_PK)})"
        )
        if isinstance(item, Refused):
            raise SlotNotFound(f"slot {slot_id} of device {serial} not found")
        return slot_from_item(item)

    def claim_for_order(self, serial: str, slot_id: str, now: datetime) -> Slot | None:
        """Move the slot's order state NONE|CANCELLED → REQUESTED if a reorder is allowed now; None if not.

        The one write that makes "exactly one DRS order per need" hold: it succeeds only when the slot
        is subscribed, has no open order (a cancelled one is closed), is out of cooldown, has had fewer
        than two cancels since its last refill and allows automatic reorders. It also clears
        ``reorderDue``, so this write's own stream record does not invoke the reorder function again.
        """
        update = UpdateBuilder()
        update.set(Attr.ORDER_STATE, str_av(OrderState.REQUESTED.value))
        update.set(Attr.ORDER_REQUESTED_AT, str_av(to_iso(now)))
        update.remove(Attr.ORDER_INSTANCE)
        update.remove(Attr.DELIVERY_DATE)
        update.set(Attr.REORDER_DUE, {"BOOL": False})
        update.bump_version()
        true = update.value({"BOOL": True})
        order_state, cooldown = update.name(Attr.ORDER_STATE), update.name(Attr.COOLDOWN)
        cancels, auto = update.name(Attr.CANCELS), update.name(Attr.AUTO_REORDER)
        max_cancels = update.value(num_av(MAX_CANCELS_BEFORE_REFILL))
        closed = [str_av(OrderState.NONE.value), str_av(OrderState.CANCELLED.value)]
        condition = " AND ".join(
            [
                f"{update.name(Attr.SUBSCRIBED)} = {true}",
                f"(attribute_not_exists({order_state}) OR {update.is_in(Attr.ORDER_STATE, closed)})",
                f"(attribute_not_exists({cooldown}) OR {cooldown} <= {update.value(str_av(to_iso(now)))})",
                f"(attribute_not_exists({cancels}) OR {cancels} < {max_cancels})",
                f"(attribute_not_exists({auto}) OR {auto} = {true})",
            ]
        )
        item = self.conditional_update(schema.slot_key(serial, slot_id), update, condition)
        if isinstance(item, Refused):
            logger.info(
                "order claim refused",
                extra={
                    "serial": serial,
                    "slotId": slot_id,
                    "slotFound": item.item is not None,
                    "orderState": item.attribute(Attr.ORDER_STATE),
                    "cooldownUntil": item.attribute(Attr.COOLDOWN),
                },
            )
            return None
        return slot_from_item(item)

    def release_claim(self, serial: str, slot_id: str) -> Slot | None:
        """Undo a claim (REQUESTED → NONE) whose order was not placed; None if the slot is not REQUESTED."""
        update = UpdateBuilder()
        update.set(Attr.ORDER_STATE, str_av(OrderState.NONE.value))
        update.remove(Attr.ORDER_REQUESTED_AT)
        update.bump_version()
        condition = f"{update.name(Attr.ORDER_STATE)} = {update.value(str_av(OrderState.REQUESTED.value))}"
        item = self.conditional_update(schema.slot_key(serial, slot_id), update, condition)
        if isinstance(item, Refused):
            logger.info(
                "claim release refused",
                extra={"serial": serial, "slotId": slot_id, "orderState": item.attribute(Attr.ORDER_STATE)},
            )
            return None
        return slot_from_item(item)

    def set_slot_order(
        self, serial: str, slot_id: str, *, expected_states: set[OrderState], new: SlotOrder
    ) -> Slot | None:
        """Replace the slot's order side with ``new`` if its order state is one of ``expected_states``.

        None when the slot is missing or in another state (a duplicate or out-of-order event).
        """
        if not expected_states:
            raise ValueError("expected_states must name at least one state")
        update = UpdateBuilder()
        for attribute, value in slot_order_attributes(new).items():
            update.set(attribute, value)
        if new.state is not OrderState.REQUESTED:
            update.remove(Attr.ORDER_REQUESTED_AT)
        update.bump_version()
        order_state = update.name(Attr.ORDER_STATE)
        allowed = update.is_in(Attr.ORDER_STATE, [str_av(state.value) for state in expected_states])
        if OrderState.NONE in expected_states:
            allowed = f"(attribute_not_exists({order_state}) OR {allowed})"
        condition = f"attribute_exists({update.name(schema.STATE_PK)}) AND {allowed}"
        item = self.conditional_update(schema.slot_key(serial, slot_id), update, condition)
        if isinstance(item, Refused):
            logger.info(
                "slot order transition refused",
                extra={
                    "serial": serial,
                    "slotId": slot_id,
                    "wanted": new.state.value,
                    "orderState": item.attribute(Attr.ORDER_STATE),
                },
            )
            return None
        return slot_from_item(item)

    # --- orders ----------------------------------------------------------------------------------

    def put_order(self, order: Order) -> None:
        """Write the order history item as given (no condition)."""
        self._dynamodb.put_item(TableName=self._table_name, Item=order_item(order))

    def get_order(self, serial: str, instance_id: str) -> Order | None:
        """One order of the device's history, or None."""
        answer = self._dynamodb.get_item(
            TableName=self._table_name, Key=key_item(schema.order_key(serial, instance_id))
        )
        item = answer.get("Item")
        return order_from_item(item) if item else None
