"""DynamoDB plumbing shared by the state-table adapters: attribute names, value codecs, item ↔ model
mapping, an UpdateItem expression builder, and a small table gateway (paginated Query, UpdateItem with
``ALL_NEW``, conditional UpdateItem that returns the old item on refusal).

Numbers travel as DynamoDB strings built from ``Decimal``; times as ISO-8601 strings
(``drs_core.clock.to_iso``), which sort chronologically, so conditions compare them directly. Absent
values are left out of items (never NULL), which keeps sparse indexes sparse.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from drs_core import schema
from drs_core.clock import parse_iso, to_iso
from drs_core.domain.models import Device, DeviceStatus, Order, OrderState, Slot, SlotOrder, SlotPolicy

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]


class Attr:
    """Attribute names of the state table's items (docs/architecture.md §3)."""

    # Attribute names (the item layout in docs/architecture.md §3).
    MODEL_ID = "modelId"
    OWNER_ID = schema.OWNER_INDEX_PK
    STATUS = "status"
    IS_TEST = "isTestDevice"
    LAST_ACTIVE = "lastActiveAt"
    CREDENTIAL_HASH = "credentialHash"
    LINKED_AT = "linkedAt"
    # On the device item and every slot item: which link the device credential belongs to. The usage
    # write requires the slot's to equal the one the device authorizer vouched for, so an unlink or a
    # re-link (which change or remove it) refuses an old credential at once, cached authorizer or not.
    LINK_ID = "linkId"
    VERSION = "version"
    REPORT_BUCKET = schema.REPORT_INDEX_PK  # derived from the serial: puts the device in the report index

    SUBSCRIBED = "subscribed"
    ASIN = "asin"
    UNIT = "unit"
    ORIGINAL_QTY = "originalQuantity"
    REMAINING_QTY = "remainingQuantity"
    ON_HAND_QTY = "onHandQuantity"
    DAILY_CONSUMPTION = "dailyConsumption"
    LAST_USE = "lastUseAt"
    ORDER_STATE = "orderState"
    ORDER_INSTANCE = "orderInstanceId"
    ORDER_REQUESTED_AT = "orderRequestedAt"  # when the current claim was taken: finds stuck claims
    DELIVERY_DATE = "estimatedDeliveryDate"
    COOLDOWN = "cooldownUntil"
    CANCELS = "cancelsSinceRefill"
    THRESHOLD = "thresholdFraction"
    LEAD_TIME = "leadTimeDays"
    SAFETY = "safetyDays"
    AUTO_REORDER = "autoReorder"
    REORDER_DUE = schema.REORDER_DUE_ATTR
    # Usage path (adapters/usage_store.py, domain/usage.py): the reorder point as a quantity, the
    # remaining level it means (point - on hand) and the headroom above it (remaining - level), valid
    # while reorderVersion = version; the day's consumption snapshot; reading times; a reorder hold.
    REORDER_POINT = "reorderPoint"
    REORDER_LEVEL = "reorderLevel"
    HEADROOM = "headroom"
    REORDER_VERSION = "reorderVersion"
    LAST_ABSOLUTE = "lastAbsoluteAt"
    LAST_READING = "lastReadingAt"
    SNAPSHOT_REMAINING = "snapshotRemaining"
    SNAPSHOT_AT = "snapshotAt"
    REFILLED_SINCE_SNAPSHOT = "refilledSinceSnapshot"
    REORDER_HELD_UNTIL = "reorderHeldUntil"
    # Set by a refill, removed once the prompt slotStatus went out (services/slot_reports.py).
    SLOT_REPORT_DUE = schema.SLOT_REPORT_DUE_ATTR
    # Demand estimation (domain/estimation.py, services/estimation.py): the use the snapshot rolls
    # counted, the daily visit's history and marks, the learnt lead time, and the planned reorder point.
    CONSUMED_TOTAL = "consumedTotal"
    PLANNED_REORDER_POINT = "plannedReorderPoint"
    USAGE_HISTORY = "usageHistory"
    USAGE_OBSERVED_AT = "usageObservedAt"
    USAGE_CONSUMED_MARK = "usageConsumedMark"
    LEARNT_LEAD_TIME = "learntLeadTimeDays"
    LEARNT_LEAD_SPREAD = "learntLeadTimeSpread"
    LEARNT_LEAD_ORDER = "learntLeadTimeOrder"
    USAGE_RUN_VARIANCE = "usageRunVariance"

    SLOT_ID = "slotId"
    IS_TEST_ORDER = "isTest"
    QUANTITY = "quantity"
    PLACED_AT = "placedAt"
    LAST_NOTIFICATION = "lastNotificationTime"
    # DRS notifications (services/notifications.py): when each kind was last applied, so a stale one
    # never undoes a newer one; ``deliveredAt`` closes an order's history for good.
    DELIVERED_AT = "deliveredAt"
    SUBSCRIPTION_NOTIFICATION = "subscriptionNotificationTime"
    REGISTERED_NOTIFICATION = "registeredNotificationTime"
    DEREGISTERED_NOTIFICATION = "deregisteredNotificationTime"


class TableGateway:
    """One DynamoDB table through the low-level client, built lazily (cheap imports, injectable)."""

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

    @property
    def client(self) -> Any:
        """The low-level DynamoDB client (a function's idempotency layer shares it: one client, not two)."""
        return self._dynamodb

    def query(self, **kwargs: Any) -> Iterator[Item]:
        """Every item of a Query, following ``LastEvaluatedKey`` across pages."""
        while True:
            answer = self._dynamodb.query(TableName=self._table_name, **kwargs)
            yield from answer.get("Items", [])
            last_key = answer.get("LastEvaluatedKey")
            if not last_key:
                return
            kwargs["ExclusiveStartKey"] = last_key

    def update(self, key: Mapping[str, str], update: UpdateBuilder) -> Item:
        answer = self._dynamodb.update_item(
            TableName=self._table_name, Key=key_item(key), ReturnValues="ALL_NEW", **update.kwargs()
        )
        return answer["Attributes"]

    def conditional_update(
        self, key: Mapping[str, str], update: UpdateBuilder, condition: str
    ) -> Item | Refused:
        """UpdateItem under ``condition``: the new item, or ``Refused`` carrying the old one if any."""
        try:
            answer = self._dynamodb.update_item(
                TableName=self._table_name,
                Key=key_item(key),
                ReturnValues="ALL_NEW",
                # The current item comes back with a refusal, so logging why costs no extra read.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ConditionExpression=condition,
                **update.kwargs(),
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return Refused(err.response.get("Item"))
        return answer["Attributes"]

    def slot_keys(self, serial: str) -> list[dict[str, str]]:
        """The keys of every slot item of the device (a keys-only, consistent Query of its partition)."""
        pages = self.query(
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :slot)",
            ProjectionExpression="#pk, #sk",
            ExpressionAttributeNames={"#pk": schema.STATE_PK, "#sk": schema.STATE_SK},
            ExpressionAttributeValues={
                ":pk": {"S": schema.device_pk(serial)},
                ":slot": {"S": schema.SLOT_PREFIX},
            },
            ConsistentRead=True,
        )
        return [{name: value["S"] for name, value in item.items()} for item in pages]

    def transact_updates(
        self, writes: Sequence[tuple[Mapping[str, str], UpdateBuilder, str]]
    ) -> Refused | None:
        """Conditional UpdateItems ``(key, update, condition)`` in one transaction: all or none.

        None when every write happened; ``Refused`` carrying the first write's item (None if absent)
        when the first write's condition failed. Any other cancellation is raised.
        """
        if len(writes) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"a transaction holds at most {MAX_TRANSACTION_ITEMS} writes")
        items = [
            {
                "Update": {
                    "TableName": self._table_name,
                    "Key": key_item(key),
                    "ConditionExpression": condition,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    **update.kwargs(),
                }
            }
            for key, update, condition in writes
        ]
        try:
            self._dynamodb.transact_write_items(TransactItems=items)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = err.response.get("CancellationReasons") or []
            first = reasons[0] if reasons else {}
            others_failed = any(r.get("Code") not in (None, "None") for r in reasons[1:])
            if first.get("Code") == "ConditionalCheckFailed" and not others_failed:
                return Refused(first.get("Item"))
            raise
        return None


# DynamoDB's limit on the writes of one TransactWriteItems.
MAX_TRANSACTION_ITEMS = 100


class Refused:
    """A conditional write that did not happen, with the item as it stood (None if absent)."""

    def __init__(self, item: Item | None) -> None:
        self.item = item

    def attribute(self, name: str) -> Any:
        if not self.item or name not in self.item:
            return None
        return next(iter(self.item[name].values()))


class UpdateBuilder:
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
        placeholder = self.name(Attr.VERSION)
        self._set.append(
            f"{placeholder} = if_not_exists({placeholder}, {self.value(num_av(0))}) + {self.value(num_av(1))}"
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


def key_item(key: Mapping[str, str]) -> Item:
    return {name: {"S": value} for name, value in key.items()}


def str_av(value: str) -> AttributeValue:
    return {"S": value}


def num_av(value: float | int) -> AttributeValue:
    """A DynamoDB number from a Python number, without float noise (0.1 stays "0.1")."""
    if isinstance(value, bool):
        raise TypeError("a bool is not a number here")
    number = Decimal(value) if isinstance(value, int) else Decimal(repr(float(value)))
    if not number.is_finite():
        raise ValueError("DynamoDB numbers must be finite")
    return {"N": format(number, "f")}


def time_av(value: datetime | None) -> AttributeValue | None:
    return str_av(to_iso(value)) if value is not None else None


def opt_str_av(value: str | None) -> AttributeValue | None:
    return str_av(value) if value is not None else None


def opt_num_av(value: float | None) -> AttributeValue | None:
    return num_av(value) if value is not None else None


def get_str(item: Item, name: str) -> str | None:
    return item[name]["S"] if name in item else None


def get_float(item: Item, name: str) -> float | None:
    return float(Decimal(item[name]["N"])) if name in item else None


def get_int(item: Item, name: str, default: int) -> int:
    return int(Decimal(item[name]["N"])) if name in item else default


def get_bool(item: Item, name: str, default: bool) -> bool:
    return bool(item[name]["BOOL"]) if name in item else default


def get_time(item: Item, name: str) -> datetime | None:
    return parse_iso(item[name]["S"]) if name in item else None


def present(attributes: dict[str, AttributeValue | None]) -> Item:
    return {name: value for name, value in attributes.items() if value is not None}


# --- items ↔ models --------------------------------------------------------------------------------


def device_attributes(device: Device) -> dict[str, AttributeValue | None]:
    return {
        Attr.MODEL_ID: str_av(device.model_id),
        Attr.OWNER_ID: opt_str_av(device.owner_id),  # absent, not NULL: keeps the owner index sparse
        Attr.STATUS: str_av(device.status.value),
        Attr.IS_TEST: {"BOOL": device.is_test_device},
        Attr.LAST_ACTIVE: time_av(device.last_active_at),
        Attr.CREDENTIAL_HASH: opt_str_av(device.credential_hash),
        Attr.LINKED_AT: time_av(device.linked_at),
        Attr.LINK_ID: opt_str_av(device.link_id),
        Attr.REPORT_BUCKET: str_av(schema.report_bucket(device.serial)),
    }


def device_item(device: Device) -> Item:
    return {
        **key_item(schema.device_key(device.serial)),
        **present(device_attributes(device)),
        Attr.VERSION: num_av(device.version),
    }


def device_from_item(item: Item) -> Device:
    return Device(
        serial=schema.serial_from_pk(item[schema.STATE_PK]["S"]),
        model_id=get_str(item, Attr.MODEL_ID) or "",
        owner_id=get_str(item, Attr.OWNER_ID),
        status=DeviceStatus(get_str(item, Attr.STATUS) or DeviceStatus.LINKED.value),
        is_test_device=get_bool(item, Attr.IS_TEST, False),
        last_active_at=get_time(item, Attr.LAST_ACTIVE),
        credential_hash=get_str(item, Attr.CREDENTIAL_HASH),
        linked_at=get_time(item, Attr.LINKED_AT),
        version=get_int(item, Attr.VERSION, 0),
        link_id=get_str(item, Attr.LINK_ID),
    )


def policy_attributes(policy: SlotPolicy) -> dict[str, AttributeValue]:
    return {
        Attr.THRESHOLD: num_av(policy.threshold_fraction),
        Attr.LEAD_TIME: num_av(policy.lead_time_days),
        Attr.SAFETY: num_av(policy.safety_days),
        Attr.AUTO_REORDER: {"BOOL": policy.auto_reorder},
    }


def slot_order_attributes(order: SlotOrder) -> dict[str, AttributeValue | None]:
    return {
        Attr.ORDER_STATE: str_av(order.state.value),
        Attr.ORDER_INSTANCE: opt_str_av(order.instance_id),
        Attr.DELIVERY_DATE: time_av(order.estimated_delivery_date),
        Attr.COOLDOWN: time_av(order.cooldown_until),
        Attr.CANCELS: num_av(order.cancels_since_refill),
    }


def slot_from_item(item: Item) -> Slot:
    defaults = SlotPolicy()
    sort_key = item[schema.STATE_SK]["S"]
    return Slot(
        serial=schema.serial_from_pk(item[schema.STATE_PK]["S"]),
        slot_id=sort_key[len(schema.SLOT_PREFIX) :],
        subscribed=get_bool(item, Attr.SUBSCRIBED, False),
        asin=get_str(item, Attr.ASIN),
        unit=get_str(item, Attr.UNIT),
        original_quantity=get_float(item, Attr.ORIGINAL_QTY) or 0.0,
        remaining_quantity=get_float(item, Attr.REMAINING_QTY) or 0.0,
        on_hand_quantity=get_float(item, Attr.ON_HAND_QTY) or 0.0,
        daily_consumption=get_float(item, Attr.DAILY_CONSUMPTION),
        last_use_at=get_time(item, Attr.LAST_USE),
        order=SlotOrder(
            state=OrderState(get_str(item, Attr.ORDER_STATE) or OrderState.NONE.value),
            instance_id=get_str(item, Attr.ORDER_INSTANCE),
            estimated_delivery_date=get_time(item, Attr.DELIVERY_DATE),
            cooldown_until=get_time(item, Attr.COOLDOWN),
            cancels_since_refill=get_int(item, Attr.CANCELS, 0),
        ),
        policy=SlotPolicy(
            threshold_fraction=get_float_or(item, Attr.THRESHOLD, defaults.threshold_fraction),
            lead_time_days=get_float_or(item, Attr.LEAD_TIME, defaults.lead_time_days),
            safety_days=get_float_or(item, Attr.SAFETY, defaults.safety_days),
            auto_reorder=get_bool(item, Attr.AUTO_REORDER, defaults.auto_reorder),
        ),
        version=get_int(item, Attr.VERSION, 0),
        last_reading_at=get_time(item, Attr.LAST_READING),
        planned_reorder_point=get_float(item, Attr.PLANNED_REORDER_POINT),
    )


def get_float_or(item: Item, name: str, default: float) -> float:
    value = get_float(item, name)
    return default if value is None else value


def order_attributes(order: Order) -> dict[str, AttributeValue | None]:
    return {
        Attr.SLOT_ID: str_av(order.slot_id),
        Attr.ORDER_STATE: str_av(order.state.value),
        Attr.IS_TEST_ORDER: {"BOOL": order.is_test},
        Attr.ASIN: opt_str_av(order.asin),
        Attr.QUANTITY: opt_num_av(order.quantity),
        Attr.UNIT: opt_str_av(order.unit),
        Attr.PLACED_AT: time_av(order.placed_at),
        Attr.DELIVERY_DATE: time_av(order.estimated_delivery_date),
        Attr.LAST_NOTIFICATION: time_av(order.last_notification_time),
    }


def order_item(order: Order) -> Item:
    return {**key_item(schema.order_key(order.serial, order.instance_id)), **present(order_attributes(order))}


def order_from_item(item: Item) -> Order:
    return Order(
        serial=schema.serial_from_pk(item[schema.STATE_PK]["S"]),
        instance_id=item[schema.STATE_SK]["S"][len(schema.ORDER_PREFIX) :],
        slot_id=get_str(item, Attr.SLOT_ID) or "",
        state=OrderState(get_str(item, Attr.ORDER_STATE) or OrderState.NONE.value),
        is_test=get_bool(item, Attr.IS_TEST_ORDER, False),
        asin=get_str(item, Attr.ASIN),
        quantity=get_float(item, Attr.QUANTITY),
        unit=get_str(item, Attr.UNIT),
        placed_at=get_time(item, Attr.PLACED_AT),
        estimated_delivery_date=get_time(item, Attr.DELIVERY_DATE),
        last_notification_time=get_time(item, Attr.LAST_NOTIFICATION),
    )


def slot_from_image(image: Mapping[str, AttributeValue]) -> Slot:
    """A ``Slot`` from a stream record's ``NewImage``/``OldImage`` (same wire format as the client's)."""
    return slot_from_item(dict(image))


def device_from_image(image: Mapping[str, AttributeValue]) -> Device:
    """A ``Device`` from a stream record's ``NewImage``/``OldImage``."""
    return device_from_item(dict(image))
