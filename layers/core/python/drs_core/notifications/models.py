"""The six DRS notification messages (docs/drs.md §4), v1 and v2 shapes, and their SNS envelope.

Parsing is tolerant where DRS is loose: unknown fields are ignored, old samples spell ``LWAClientId``,
optional keys may be missing, an empty ``estimatedDeliveryDate`` means "not known", and both shapes of
``orderInfo`` (v1: delivery date on the order; v2: on each product, with the ASIN) and of
``slotsSubscriptionStatus`` (v1: ``{slot: bool}``; v2: ``{slot: {subscribed, productInfoList}}``) are
understood whatever the SNS ``version`` attribute says; the attribute is kept as ``schema_version`` for
the logs. What still does not parse raises ``MalformedNotification``: its SQS record fails and, after the
queue's retries, lands in the dead-letter queue. A notification type DRS may add later raises
``UnsupportedNotification`` instead, which the caller acknowledges.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from drs_core.clock import parse_iso


class NotificationType(StrEnum):
    ORDER_PLACED = "OrderPlacedNotification"
    ITEM_SHIPPED = "ItemShippedNotification"
    ORDER_CANCELLED = "OrderCancelledNotification"
    SUBSCRIPTION_CHANGED = "SubscriptionChangedNotification"
    DEVICE_REGISTERED = "DeviceRegisteredNotification"
    DEVICE_DEREGISTERED = "DeviceDeregisteredNotification"


class MalformedNotification(ValueError):
    """The record cannot be understood: not JSON, not an SNS notification, or a required key is wrong."""


class UnsupportedNotification(Exception):
    """A well-formed message of a type we do not handle (a type DRS added later, or an SNS control
    message): acknowledged and counted, never retried."""

    def __init__(self, kind: str, notification_id: str | None = None) -> None:
        super().__init__(f"unsupported notification type {kind!r}")
        self.kind = kind
        self.notification_id = notification_id


# --- value parsing ---------------------------------------------------------------------------------


def _utc(value: Any) -> Any:
    """ISO-8601 text (``Z`` or offset) or a datetime → an aware UTC datetime; other input is left to
    pydantic, which rejects it."""
    if isinstance(value, str):
        return parse_iso(value.strip())
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _optional_utc(value: Any) -> Any:
    # DRS samples carry "" where no delivery date is known yet.
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _utc(value)


def _as_list(value: Any) -> Any:
    # ``productInfo`` is a list in every sample; accept a lone object as a list of one.
    if value is None:
        return []
    return [value] if isinstance(value, Mapping) else value


def _as_optional_list(value: Any) -> Any:
    return [value] if isinstance(value, Mapping) else value


def _slot_statuses(value: Any) -> Any:
    # v1 says only whether each slot is subscribed; ``productInfoList`` None marks "not told", as
    # opposed to [] ("no product picked").
    if not isinstance(value, Mapping):
        return value
    return {
        slot_id: {"subscribed": status} if isinstance(status, bool | str) else status
        for slot_id, status in value.items()
    }


UtcDateTime = Annotated[datetime, BeforeValidator(_utc)]
OptionalUtcDateTime = Annotated[datetime | None, BeforeValidator(_optional_utc)]
Serial = Annotated[str, Field(pattern=r"^[A-Za-z0-9+_-]{1,64}$")]
Identifier = Annotated[str, Field(min_length=1, max_length=256)]


class _Wire(BaseModel):
    """camelCase on the wire, unknown keys ignored, immutable once parsed."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True, allow_inf_nan=False
    )


# --- message parts ---------------------------------------------------------------------------------


class NotificationInfo(_Wire):
    notification_type: str
    notification_id: Identifier
    notification_time: UtcDateTime
    lwa_client_id: str | None = Field(
        default=None, validation_alias=AliasChoices("lwaClientId", "LWAClientId")
    )
    version: str | None = None


class DeviceIdentifier(_Wire):
    serial_number: Serial


class ProductIdentifier(_Wire):
    model_id: str | None = None


class DeviceInfo(_Wire):
    device_identifier: DeviceIdentifier
    product_identifier: ProductIdentifier | None = None


class CustomerInfo(_Wire):
    directed_customer_id: str | None = None


class ProductInfo(_Wire):
    quantity: float | None = Field(default=None, ge=0)
    unit: str | None = None
    asin: str | None = None
    estimated_delivery_date: OptionalUtcDateTime = None


class OrderInfo(_Wire):
    instance_id: Identifier
    slot_id: Identifier
    product_info: Annotated[list[ProductInfo], BeforeValidator(_as_list)] = []
    estimated_delivery_date: OptionalUtcDateTime = None  # v1 only; v2 carries it per product

    @property
    def eta(self) -> datetime | None:
        """The estimated delivery date, wherever the shape put it."""
        if self.estimated_delivery_date is not None:
            return self.estimated_delivery_date
        return next((p.estimated_delivery_date for p in self.product_info if p.estimated_delivery_date), None)

    @property
    def quantity(self) -> float | None:
        """Total quantity ordered, in ``unit`` (None when DRS did not say)."""
        quantities = [p.quantity for p in self.product_info if p.quantity is not None]
        return sum(quantities) if quantities else None

    @property
    def unit(self) -> str | None:
        return next((p.unit for p in self.product_info if p.unit), None)

    @property
    def asin(self) -> str | None:
        return next((p.asin for p in self.product_info if p.asin), None)


class SlotSubscription(_Wire):
    subscribed: bool
    # None: the message did not say which product (v1); []: no product picked (cleared).
    product_info_list: Annotated[list[ProductInfo] | None, BeforeValidator(_as_optional_list)] = None

    @property
    def product(self) -> ProductInfo | None:
        return self.product_info_list[0] if self.product_info_list else None


class SubscriptionInfo(_Wire):
    slots_subscription_status: Annotated[dict[Identifier, SlotSubscription], BeforeValidator(_slot_statuses)]


# --- the six messages ------------------------------------------------------------------------------


class Notification(_Wire):
    """Common to every type. ``schema_version`` comes from the SNS ``version`` attribute ("1" if absent)."""

    kind: ClassVar[NotificationType]

    schema_version: str = "1"
    notification_info: NotificationInfo
    device_info: DeviceInfo
    customer_info: CustomerInfo | None = None

    @property
    def notification_id(self) -> str:
        return self.notification_info.notification_id

    @property
    def notification_time(self) -> datetime:
        return self.notification_info.notification_time

    @property
    def serial(self) -> str:
        return self.device_info.device_identifier.serial_number

    @property
    def model_id(self) -> str | None:
        product = self.device_info.product_identifier
        return product.model_id if product else None


class OrderNotification(Notification):
    order_info: OrderInfo


class OrderPlaced(OrderNotification):
    kind = NotificationType.ORDER_PLACED


class ItemShipped(OrderNotification):
    kind = NotificationType.ITEM_SHIPPED


class OrderCancelled(OrderNotification):
    """Carries only ``instanceId`` and ``slotId``: DRS gives no reason (customer, or 72 h expiry)."""

    kind = NotificationType.ORDER_CANCELLED


class SubscriptionChanged(Notification):
    kind = NotificationType.SUBSCRIPTION_CHANGED
    subscription_info: SubscriptionInfo


class DeviceRegistered(Notification):
    kind = NotificationType.DEVICE_REGISTERED


class DeviceDeregistered(Notification):
    kind = NotificationType.DEVICE_DEREGISTERED


MODELS: dict[str, type[Notification]] = {
    model.kind.value: model
    for model in (
        OrderPlaced,
        ItemShipped,
        OrderCancelled,
        SubscriptionChanged,
        DeviceRegistered,
        DeviceDeregistered,
    )
}


def parse_message(message: str | Mapping[str, Any], schema_version: str = "1") -> Notification:
    """The SNS ``Message`` (JSON text or already decoded) as its notification model."""
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except json.JSONDecodeError as err:
            raise MalformedNotification(f"the message is not JSON ({err.msg})") from None
    if not isinstance(message, Mapping):
        raise MalformedNotification("the message is not a JSON object")
    info = message.get("notificationInfo")
    kind = info.get("notificationType") if isinstance(info, Mapping) else None
    if not isinstance(kind, str) or not kind:
        raise MalformedNotification("notificationInfo.notificationType is missing")
    model = MODELS.get(kind)
    if model is None:
        notification_id = info.get("notificationId") if isinstance(info, Mapping) else None
        raise UnsupportedNotification(kind, notification_id if isinstance(notification_id, str) else None)
    try:
        return model.model_validate({**message, "schemaVersion": schema_version})
    except ValidationError as err:
        # Locations and reasons only: the values stay out of logs and the DLQ's failure reasons.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in err.errors(include_input=False, include_url=False)
        )
        raise MalformedNotification(f"{kind}: {problems}") from None


# --- the SNS envelope ------------------------------------------------------------------------------


def _attribute_text(value: object) -> object:
    """A message attribute's value as text: numbers (not booleans) become their decimal string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class SnsMessageAttribute(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str = Field(default="String", alias="Type")
    # DRS's own sample sends the version as a JSON number ("Type": "Number", "Value": 2.0).
    value: Annotated[str | None, BeforeValidator(_attribute_text)] = Field(default=None, alias="Value")


class SnsEnvelope(BaseModel):
    """An SNS notification as an SQS subscriber receives it with raw message delivery off."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str = Field(alias="Type")
    message: str = Field(alias="Message")
    message_id: str | None = Field(default=None, alias="MessageId")
    topic_arn: str | None = Field(default=None, alias="TopicArn")
    # SNS leaves the key out when a message has no attributes (every v1 message).
    message_attributes: dict[str, SnsMessageAttribute] | None = Field(default=None, alias="MessageAttributes")


def schema_version(attribute: str | float | None) -> str:
    """``"2"`` for the ``version`` attribute ``"2.0"`` (or the number 2.0), ``"1"`` when there is none
    (v1 messages)."""
    if attribute is None or attribute == "":
        return "1"
    return str(_attribute_text(attribute)).strip().split(".", 1)[0] or "1"


def decode_record(body: str, sqs_message_attributes: Mapping[str, Any] | None = None) -> Notification:
    """An SQS record's body → its notification.

    The body is the SNS envelope (raw message delivery off, as deployed). Should raw delivery be turned
    on, the body is the DRS message itself and ``version`` arrives among the SQS message attributes;
    both work.
    """
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, TypeError) as err:
        raise MalformedNotification(f"the record body is not JSON ({err})") from None
    if isinstance(document, Mapping) and "notificationInfo" in document:
        attribute = (sqs_message_attributes or {}).get("version") or {}
        version = attribute.get("stringValue") or attribute.get("StringValue")
        return parse_message(document, schema_version(version))
    try:
        envelope = SnsEnvelope.model_validate(document)
    except ValidationError:
        raise MalformedNotification(
            "the record body is neither an SNS notification nor a DRS message"
        ) from None
    if envelope.type != "Notification":
        raise UnsupportedNotification(f"SNS {envelope.type}")
    version_attribute = (envelope.message_attributes or {}).get("version")
    return parse_message(
        envelope.message, schema_version(version_attribute.value if version_attribute else None)
    )
