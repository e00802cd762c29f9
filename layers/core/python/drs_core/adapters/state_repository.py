"""The state table: devices, slots and orders as domain models, with every guarded move a single write.

Layout (``drs_core.schema``): one partition per device, ``pk = DEVICE#<serial>``; the device item
(``sk = DEVICE``), one item per slot (``sk = SLOT#<slotId>``) and the order history
(``sk = ORDER#<instanceId>``). Transitions that decide correctness (claiming a slot for an order,
order-state moves, linking) are conditional writes returning the new item (``ALL_NEW``), so callers
never read-then-write. Numbers travel as DynamoDB strings built from ``Decimal``; times as ISO-8601
strings (``drs_core.clock.to_iso``), which sort chronologically, so conditions compare them directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from drs_core import schema
from drs_core.clock import parse_iso, to_iso
from drs_core.domain.models import (
    Device,
    DeviceStatus,
    Order,
    OrderState,
    Slot,
    SlotOrder,
    SlotPolicy,
)
from drs_core.errors import DeviceAlreadyLinked, SlotNotFound
from drs_core.observability import logger

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

# A third customer cancel is never reached: after the second one, no reorder until refill (DRS CX).
MAX_CANCELS_BEFORE_REFILL = 2

# Attribute names (the item layout in architecture §3).
_MODEL_ID = "modelId"
_OWNER_ID = schema.OWNER_INDEX_PK
_STATUS = "status"
_IS_TEST = "isTestDevice"
_LAST_ACTIVE = "lastActiveAt"
_CREDENTIAL_HASH = "credentialHash"
_LINKED_AT = "linkedAt"
_VERSION = "version"

_SUBSCRIBED = "subscribed"
_ASIN = "asin"
_UNIT = "unit"
_ORIGINAL_QTY = "originalQuantity"
_REMAINING_QTY = "remainingQuantity"
_ON_HAND_QTY = "onHandQuantity"
_DAILY_CONSUMPTION = "dailyConsumption"
_LAST_USE = "lastUseAt"
_ORDER_STATE = "orderState"
_ORDER_INSTANCE = "orderInstanceId"
_ORDER_REQUESTED_AT = "orderRequestedAt"  # when the current claim was taken: finds stuck claims
_DELIVERY_DATE = "estimatedDeliveryDate"
_COOLDOWN = "cooldownUntil"
_CANCELS = "cancelsSinceRefill"
_THRESHOLD = "thresholdFraction"
_LEAD_TIME = "leadTimeDays"
_SAFETY = "safetyDays"
_AUTO_REORDER = "autoReorder"
_REORDER_DUE = schema.REORDER_DUE_ATTR

_SLOT_ID = "slotId"
_IS_TEST_ORDER = "isTest"
_QUANTITY = "quantity"
_PLACED_AT = "placedAt"
_LAST_NOTIFICATION = "lastNotificationTime"


class StateRepository:
    """Reads and guarded writes of the state table, in domain models."""

    def __init__(self, table_name: str, *, dynamodb: Any = None) -> None:
        self._table_name = table_name
        self._client = dynamodb

    # Built on first use, so importing a handler costs no AWS client setup.
    @property
    def _dynamodb(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("dynamodb")
        return self._client

    # --- devices ---------------------------------------------------------------------------------

    def put_device(self, device: Device) -> None:
        """Write the device item exactly as given (no condition)."""
        self._dynamodb.put_item(TableName=self._table_name, Item=_device_item(device))

    def get_device(self, serial: str, *, consistent: bool = False) -> Device | None:
        """The device, or None if it was never stored."""
        answer = self._dynamodb.get_item(
            TableName=self._table_name, Key=_key(schema.device_key(serial)), ConsistentRead=consistent
        )
        item = answer.get("Item")
        return _device_from_item(item) if item else None

    def get_device_with_slots(
        self, serial: str, *, consistent: bool = False
    ) -> tuple[Device, list[Slot]] | None:
        """The device and its slots (sorted by slot id) from one Query; None if there is no device item."""
        device: Device | None = None
        slots: list[Slot] = []
        pages = self._query(
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
                device = _device_from_item(item)
            elif sort_key.startswith(schema.SLOT_PREFIX):
                slots.append(_slot_from_item(item))
        if device is None:
            return None
        return device, sorted(slots, key=lambda slot: slot.slot_id)

    def list_devices_by_owner(self, owner_id: str) -> list[Device]:
        """Every device linked to ``owner_id`` (the sparse ``owner`` index holds device items only)."""
        pages = self._query(
            IndexName=schema.OWNER_INDEX,
            KeyConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#owner": schema.OWNER_INDEX_PK},
            ExpressionAttributeValues={":owner": {"S": owner_id}},
        )
        return [_device_from_item(item) for item in pages]

    def set_device_status(
        self, serial: str, status: DeviceStatus, *, expected: set[DeviceStatus] | None = None
    ) -> Device | None:
        """Set the status; None when the device is missing or its status is not in ``expected``."""
        if expected is not None and not expected:
            raise ValueError("expected must name at least one status, or be None")
        update = _Update()
        update.set(_STATUS, _s(status.value))
        update.bump_version()
        condition = f"attribute_exists({update.name(schema.STATE_PK)})"
        if expected is not None:
            condition += f" AND {update.is_in(_STATUS, [_s(state.value) for state in expected])}"
        item = self._conditional_update(schema.device_key(serial), update, condition)
        if isinstance(item, _Refused):
            logger.info(
                "device status change refused",
                extra={"serial": serial, "wanted": status.value, "current": item.attribute(_STATUS)},
            )
            return None
        return _device_from_item(item)

    def link_device(self, device: Device, *, owner_id: str) -> Device:
        """Create the device item or re-link it to ``owner_id``; raise ``DeviceAlreadyLinked`` otherwise.

        Allowed when the device is new, already the same owner's (re-link rotates credentials), or
        deregistered (a new customer may take it). The device item is written as given.
        """
        update = _Update()
        for attribute, value in {**_device_attributes(device), _OWNER_ID: _s(owner_id)}.items():
            update.set(attribute, value)
        update.bump_version()
        condition = (
            f"attribute_not_exists({update.name(schema.STATE_PK)})"
            f" OR {update.name(_OWNER_ID)} = {update.value(_s(owner_id))}"
            f" OR {update.name(_STATUS)} = {update.value(_s(DeviceStatus.DEREGISTERED.value))}"
        )
        item = self._conditional_update(schema.device_key(device.serial), update, condition)
        if isinstance(item, _Refused):
            logger.info("link refused: device linked to another account", extra={"serial": device.serial})
            raise DeviceAlreadyLinked(f"device {device.serial} is linked to another account")
        return _device_from_item(item)

    # --- slots -----------------------------------------------------------------------------------

    def get_slot(self, serial: str, slot_id: str, *, consistent: bool = False) -> Slot | None:
        """One slot, or None."""
        answer = self._dynamodb.get_item(
            TableName=self._table_name,
            Key=_key(schema.slot_key(serial, slot_id)),
            ConsistentRead=consistent,
        )
        item = answer.get("Item")
        return _slot_from_item(item) if item else None

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
    ) -> Slot:
        """Record the slot's subscription (DRS ``subscriptionInfo`` / SubscriptionChanged).

        A new slot starts with zeroed counters, no order and ``default_policy`` (the model's, else
        ``SlotPolicy()``); an existing slot keeps its counters, order state and policy. ``asin`` None
        clears the product; ``quantity`` (the package size, stored as ``originalQuantity``) and ``unit``
        None leave the stored values alone.
        """
        policy = default_policy or SlotPolicy()
        update = _Update()
        update.set(_SUBSCRIBED, {"BOOL": subscribed})
        update.set(_ASIN, _s(asin) if asin is not None else None)
        if quantity is not None:
            update.set(_ORIGINAL_QTY, _n(quantity))
        if unit is not None:
            update.set(_UNIT, _s(unit))
        if quantity is None:
            update.set_if_absent(_ORIGINAL_QTY, _n(0))
        update.set_if_absent(_REMAINING_QTY, _n(0))
        update.set_if_absent(_ON_HAND_QTY, _n(0))
        update.set_if_absent(_ORDER_STATE, _s(OrderState.NONE.value))
        update.set_if_absent(_CANCELS, _n(0))
        for attribute, value in _policy_attributes(policy).items():
            update.set_if_absent(attribute, value)
        update.bump_version()
        item = self._update(schema.slot_key(serial, slot_id), update)
        return _slot_from_item(item)

    def add_on_hand(self, serial: str, slot_id: str, quantity: float) -> Slot:
        """Add ``quantity`` (negative to take away) to the stock shipped but not yet loaded."""
        update = _Update()
        update.add(_ON_HAND_QTY, _n(quantity))
        update.bump_version()
        item = self._conditional_update(
            schema.slot_key(serial, slot_id), update, f"attribute_exists({update.name(schema.STATE_PK)})"
        )
        if isinstance(item, _Refused):
            raise SlotNotFound(f"slot {slot_id} of device {serial} not found")
        return _slot_from_item(item)

    def update_policy(self, serial: str, slot_id: str, policy: SlotPolicy) -> Slot:
        """Replace the slot's reorder policy; raise ``SlotNotFound`` if the slot does not exist."""
        update = _Update()
        for attribute, value in _policy_attributes(policy).items():
            update.set(attribute, value)
        update.bump_version()
        item = self._conditional_update(
            schema.slot_key(serial, slot_id), update, f"attribute_exists({update.name(schema.STATE_PK)})"
        )
        if isinstance(item, _Refused):
            raise SlotNotFound(f"slot {slot_id} of device {serial} not found")
        return _slot_from_item(item)

    def claim_for_order(self, serial: str, slot_id: str, now: datetime) -> Slot | None:
        """Move the slot's order state NONE → REQUESTED if a reorder is allowed now; None if not.

        The one write that makes "exactly one DRS order per need" hold: it succeeds only when the slot
        is subscribed, has no open order, is out of cooldown, has had fewer than two cancels since its
        last refill and allows automatic reorders. It also clears ``reorderDue``, so this write's own
        stream record does not invoke the reorder function again.
        """
        update = _Update()
        update.set(_ORDER_STATE, _s(OrderState.REQUESTED.value))
        update.set(_ORDER_REQUESTED_AT, _s(to_iso(now)))
        update.set(_REORDER_DUE, {"BOOL": False})
        update.bump_version()
        true = update.value({"BOOL": True})
        order_state, cooldown = update.name(_ORDER_STATE), update.name(_COOLDOWN)
        cancels, auto = update.name(_CANCELS), update.name(_AUTO_REORDER)
        max_cancels = update.value(_n(MAX_CANCELS_BEFORE_REFILL))
        condition = " AND ".join(
            [
                f"{update.name(_SUBSCRIBED)} = {true}",
                f"(attribute_not_exists({order_state})"
                f" OR {order_state} = {update.value(_s(OrderState.NONE.value))})",
                f"(attribute_not_exists({cooldown}) OR {cooldown} <= {update.value(_s(to_iso(now)))})",
                f"(attribute_not_exists({cancels}) OR {cancels} < {max_cancels})",
                f"(attribute_not_exists({auto}) OR {auto} = {true})",
            ]
        )
        item = self._conditional_update(schema.slot_key(serial, slot_id), update, condition)
        if isinstance(item, _Refused):
            logger.info(
                "order claim refused",
                extra={
                    "serial": serial,
                    "slotId": slot_id,
                    "slotFound": item.item is not None,
                    "orderState": item.attribute(_ORDER_STATE),
                    "cooldownUntil": item.attribute(_COOLDOWN),
                },
            )
            return None
        return _slot_from_item(item)

    def release_claim(self, serial: str, slot_id: str) -> Slot | None:
        """Undo a claim (REQUESTED → NONE) whose order was not placed; None if the slot is not REQUESTED."""
        update = _Update()
        update.set(_ORDER_STATE, _s(OrderState.NONE.value))
        update.remove(_ORDER_REQUESTED_AT)
        update.bump_version()
        condition = f"{update.name(_ORDER_STATE)} = {update.value(_s(OrderState.REQUESTED.value))}"
        item = self._conditional_update(schema.slot_key(serial, slot_id), update, condition)
        if isinstance(item, _Refused):
            logger.info(
                "claim release refused",
                extra={"serial": serial, "slotId": slot_id, "orderState": item.attribute(_ORDER_STATE)},
            )
            return None
        return _slot_from_item(item)

    def set_slot_order(
        self, serial: str, slot_id: str, *, expected_states: set[OrderState], new: SlotOrder
    ) -> Slot | None:
        """Replace the slot's order side with ``new`` if its order state is one of ``expected_states``.

        None when the slot is missing or in another state (a duplicate or out-of-order event).
        """
        if not expected_states:
            raise ValueError("expected_states must name at least one state")
        update = _Update()
        for attribute, value in _slot_order_attributes(new).items():
            update.set(attribute, value)
        if new.state is not OrderState.REQUESTED:
            update.remove(_ORDER_REQUESTED_AT)
        update.bump_version()
        order_state = update.name(_ORDER_STATE)
        allowed = update.is_in(_ORDER_STATE, [_s(state.value) for state in expected_states])
        if OrderState.NONE in expected_states:
            allowed = f"(attribute_not_exists({order_state}) OR {allowed})"
        condition = f"attribute_exists({update.name(schema.STATE_PK)}) AND {allowed}"
        item = self._conditional_update(schema.slot_key(serial, slot_id), update, condition)
        if isinstance(item, _Refused):
            logger.info(
                "slot order transition refused",
                extra={
                    "serial": serial,
                    "slotId": slot_id,
                    "wanted": new.state.value,
                    "orderState": item.attribute(_ORDER_STATE),
                },
            )
            return None
        return _slot_from_item(item)

    # --- orders ----------------------------------------------------------------------------------

    def put_order(self, order: Order) -> None:
        """Write the order history item as given (no condition)."""
        self._dynamodb.put_item(TableName=self._table_name, Item=_order_item(order))

    def get_order(self, serial: str, instance_id: str) -> Order | None:
        """One order of the device's history, or None."""
        answer = self._dynamodb.get_item(
            TableName=self._table_name, Key=_key(schema.order_key(serial, instance_id))
        )
        item = answer.get("Item")
        return _order_from_item(item) if item else None

    # --- plumbing --------------------------------------------------------------------------------

    def _query(self, **kwargs: Any) -> Iterator[Item]:
        """Every item of a Query, following ``LastEvaluatedKey`` across pages."""
        while True:
            answer = self._dynamodb.query(TableName=self._table_name, **kwargs)
            yield from answer.get("Items", [])
            last_key = answer.get("LastEvaluatedKey")
            if not last_key:
                return
            kwargs["ExclusiveStartKey"] = last_key

    def _update(self, key: Mapping[str, str], update: _Update) -> Item:
        answer = self._dynamodb.update_item(
            TableName=self._table_name, Key=_key(key), ReturnValues="ALL_NEW", **update.kwargs()
        )
        return answer["Attributes"]

    def _conditional_update(self, key: Mapping[str, str], update: _Update, condition: str) -> Item | _Refused:
        """UpdateItem under ``condition``: the new item, or ``_Refused`` carrying the old one if any."""
        try:
            answer = self._dynamodb.update_item(
                TableName=self._table_name,
                Key=_key(key),
                ReturnValues="ALL_NEW",
                # The current item comes back with a refusal, so logging why costs no extra read.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ConditionExpression=condition,
                **update.kwargs(),
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return _Refused(err.response.get("Item"))
        return answer["Attributes"]


class _Refused:
    """A conditional write that did not happen, with the item as it stood (None if absent)."""

    def __init__(self, item: Item | None) -> None:
        self.item = item

    def attribute(self, name: str) -> Any:
        if not self.item or name not in self.item:
            return None
        return next(iter(self.item[name].values()))


class _Update:
    """Builds one UpdateItem's expressions, placeholders shared with its condition."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, AttributeValue] = {}
        self._set: list[str] = []
        self._remove: list[str] = []
        self._add: list[str] = []

    def name(self, attribute: str) -> str:
        placeholder = f"#{attribute}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: AttributeValue) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def set(self, attribute: str, value: AttributeValue | None) -> None:
        """SET the attribute, or REMOVE it when ``value`` is None (absent, never NULL)."""
        if value is None:
            self.remove(attribute)
        else:
            self._set.append(f"{self.name(attribute)} = {self.value(value)}")

    def set_if_absent(self, attribute: str, value: AttributeValue) -> None:
        placeholder = self.name(attribute)
        self._set.append(f"{placeholder} = if_not_exists({placeholder}, {self.value(value)})")

    def remove(self, attribute: str) -> None:
        self._remove.append(self.name(attribute))

    def add(self, attribute: str, value: AttributeValue) -> None:
        self._add.append(f"{self.name(attribute)} {self.value(value)}")

    def bump_version(self) -> None:
        placeholder = self.name(_VERSION)
        self._set.append(
            f"{placeholder} = if_not_exists({placeholder}, {self.value(_n(0))}) + {self.value(_n(1))}"
        )

    def is_in(self, attribute: str, values: Iterable[AttributeValue]) -> str:
        placeholders = ", ".join(self.value(value) for value in values)
        return f"{self.name(attribute)} IN ({placeholders})"

    def kwargs(self) -> dict[str, Any]:
        clauses = []
        if self._set:
            clauses.append("SET " + ", ".join(self._set))
        if self._remove:
            clauses.append("REMOVE " + ", ".join(self._remove))
        if self._add:
            clauses.append("ADD " + ", ".join(self._add))
        kwargs: dict[str, Any] = {
            "UpdateExpression": " ".join(clauses),
            "ExpressionAttributeNames": self.names,
        }
        if self.values:
            kwargs["ExpressionAttributeValues"] = self.values
        return kwargs


# --- attribute values ------------------------------------------------------------------------------


def _key(key: Mapping[str, str]) -> Item:
    return {name: {"S": value} for name, value in key.items()}


def _s(value: str) -> AttributeValue:
    return {"S": value}


def _n(value: float | int) -> AttributeValue:
    """A DynamoDB number from a Python number, without float noise (0.1 stays "0.1")."""
    if isinstance(value, bool):
        raise TypeError("a bool is not a number here")
    number = Decimal(value) if isinstance(value, int) else Decimal(repr(float(value)))
    if not number.is_finite():
        raise ValueError("DynamoDB numbers must be finite")
    return {"N": format(number, "f")}


def _time(value: datetime | None) -> AttributeValue | None:
    return _s(to_iso(value)) if value is not None else None


def _opt_s(value: str | None) -> AttributeValue | None:
    return _s(value) if value is not None else None


def _opt_n(value: float | None) -> AttributeValue | None:
    return _n(value) if value is not None else None


def _get_str(item: Item, name: str) -> str | None:
    return item[name]["S"] if name in item else None


def _get_float(item: Item, name: str) -> float | None:
    return float(Decimal(item[name]["N"])) if name in item else None


def _get_int(item: Item, name: str, default: int) -> int:
    return int(Decimal(item[name]["N"])) if name in item else default


def _get_bool(item: Item, name: str, default: bool) -> bool:
    return bool(item[name]["BOOL"]) if name in item else default


def _get_time(item: Item, name: str) -> datetime | None:
    return parse_iso(item[name]["S"]) if name in item else None


def _present(attributes: dict[str, AttributeValue | None]) -> Item:
    return {name: value for name, value in attributes.items() if value is not None}


# --- items ↔ models --------------------------------------------------------------------------------


def _device_attributes(device: Device) -> dict[str, AttributeValue | None]:
    return {
        _MODEL_ID: _s(device.model_id),
        _OWNER_ID: _opt_s(device.owner_id),  # absent, not NULL: keeps the owner index sparse
        _STATUS: _s(device.status.value),
        _IS_TEST: {"BOOL": device.is_test_device},
        _LAST_ACTIVE: _time(device.last_active_at),
        _CREDENTIAL_HASH: _opt_s(device.credential_hash),
        _LINKED_AT: _time(device.linked_at),
    }


def _device_item(device: Device) -> Item:
    return {
        **_key(schema.device_key(device.serial)),
        **_present(_device_attributes(device)),
        _VERSION: _n(device.version),
    }


def _device_from_item(item: Item) -> Device:
    return Device(
        serial=schema.serial_from_pk(item[schema.STATE_PK]["S"]),
        model_id=_get_str(item, _MODEL_ID) or "",
        owner_id=_get_str(item, _OWNER_ID),
        status=DeviceStatus(_get_str(item, _STATUS) or DeviceStatus.LINKED.value),
        is_test_device=_get_bool(item, _IS_TEST, False),
        last_active_at=_get_time(item, _LAST_ACTIVE),
        credential_hash=_get_str(item, _CREDENTIAL_HASH),
        linked_at=_get_time(item, _LINKED_AT),
        version=_get_int(item, _VERSION, 0),
    )


def _policy_attributes(policy: SlotPolicy) -> dict[str, AttributeValue]:
    return {
        _THRESHOLD: _n(policy.threshold_fraction),
        _LEAD_TIME: _n(policy.lead_time_days),
        _SAFETY: _n(policy.safety_days),
        _AUTO_REORDER: {"BOOL": policy.auto_reorder},
    }


def _slot_order_attributes(order: SlotOrder) -> dict[str, AttributeValue | None]:
    return {
        _ORDER_STATE: _s(order.state.value),
        _ORDER_INSTANCE: _opt_s(order.instance_id),
        _DELIVERY_DATE: _time(order.estimated_delivery_date),
        _COOLDOWN: _time(order.cooldown_until),
        _CANCELS: _n(order.cancels_since_refill),
    }


def _slot_from_item(item: Item) -> Slot:
    defaults = SlotPolicy()
    sort_key = item[schema.STATE_SK]["S"]
    return Slot(
        serial=schema.serial_from_pk(item[schema.STATE_PK]["S"]),
        slot_id=sort_key[len(schema.SLOT_PREFIX) :],
        subscribed=_get_bool(item, _SUBSCRIBED, False),
        asin=_get_str(item, _ASIN),
        unit=_get_str(item, _UNIT),
        original_quantity=_get_float(item, _ORIGINAL_QTY) or 0.0,
        remaining_quantity=_get_float(item, _REMAINING_QTY) or 0.0,
        on_hand_quantity=_get_float(item, _ON_HAND_QTY) or 0.0,
        daily_consumption=_get_float(item, _DAILY_CONSUMPTION),
        last_use_at=_get_time(item, _LAST_USE),
        order=SlotOrder(
            state=OrderState(_get_str(item, _ORDER_STATE) or OrderState.NONE.value),
            instance_id=_get_str(item, _ORDER_INSTANCE),
            estimated_delivery_date=_get_time(item, _DELIVERY_DATE),
            cooldown_until=_get_time(item, _COOLDOWN),
            cancels_since_refill=_get_int(item, _CANCELS, 0),
        ),
        policy=SlotPolicy(
            threshold_fraction=_float_or(item, _THRESHOLD, defaults.threshold_fraction),
            lead_time_days=_float_or(item, _LEAD_TIME, defaults.lead_time_days),
            safety_days=_float_or(item, _SAFETY, defaults.safety_days),
            auto_reorder=_get_bool(item, _AUTO_REORDER, defaults.auto_reorder),
        ),
        version=_get_int(item, _VERSION, 0),
    )


def _float_or(item: Item, name: str, default: float) -> float:
    value = _get_float(item, name)
    return default if value is None else value


def _order_item(order: Order) -> Item:
    return {
        **_key(schema.order_key(order.serial, order.instance_id)),
        **_present(
            {
                _SLOT_ID: _s(order.slot_id),
                _ORDER_STATE: _s(order.state.value),
                _IS_TEST_ORDER: {"BOOL": order.is_test},
                _ASIN: _opt_s(order.asin),
                _QUANTITY: _opt_n(order.quantity),
                _UNIT: _opt_s(order.unit),
                _PLACED_AT: _time(order.placed_at),
                _DELIVERY_DATE: _time(order.estimated_delivery_date),
                _LAST_NOTIFICATION: _time(order.last_notification_time),
            }
        ),
    }


def _order_from_item(item: Item) -> Order:
    return Order(
        serial=schema.serial_from_pk(item[schema.STATE_PK]["S"]),
        instance_id=item[schema.STATE_SK]["S"][len(schema.ORDER_PREFIX) :],
        slot_id=_get_str(item, _SLOT_ID) or "",
        state=OrderState(_get_str(item, _ORDER_STATE) or OrderState.NONE.value),
        is_test=_get_bool(item, _IS_TEST_ORDER, False),
        asin=_get_str(item, _ASIN),
        quantity=_get_float(item, _QUANTITY),
        unit=_get_str(item, _UNIT),
        placed_at=_get_time(item, _PLACED_AT),
        estimated_delivery_date=_get_time(item, _DELIVERY_DATE),
        last_notification_time=_get_time(item, _LAST_NOTIFICATION),
    )


def slot_from_image(image: Mapping[str, AttributeValue]) -> Slot:
    """A ``Slot`` from a stream record's ``NewImage``/``OldImage`` (same wire format as the client's)."""
    return _slot_from_item(dict(image))


def device_from_image(image: Mapping[str, AttributeValue]) -> Device:
    """A ``Device`` from a stream record's ``NewImage``/``OldImage``."""
    return _device_from_item(dict(image))
