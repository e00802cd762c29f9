"""The DRS notification models: v1 and v2 shapes, tolerance rules (docs/drs.md §4), and what
counts as malformed. Messages come from the simulator's own builders where they can."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from drs_core.notifications.models import (
    DeviceDeregistered,
    ItemShipped,
    MalformedNotification,
    OrderCancelled,
    OrderPlaced,
    SubscriptionChanged,
    UnsupportedNotification,
    decode_record,
    parse_message,
    schema_version,
)
from sandbox.simulator import notifications as sim_notes
from sandbox.simulator.records import Product
from tests.support.notifications import DrsMessages

AT = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
FILTER = Product("B00FILTER1", 2, "count")
DRS = DrsMessages(serial="SN-0001")


def order_message(kind: str, version: str) -> dict:
    order = DRS.order("amzn1.dash.v2.o.ORDER1", "Filter", FILTER, placed_at=AT)
    return DRS.message(kind, AT, version, order=order)


@pytest.mark.parametrize("version", ["1", "2"])
def test_order_placed_reads_both_shapes(version):
    # Given an OrderPlaced in the v1 or v2 shape
    message = order_message(sim_notes.ORDER_PLACED, version)
    # When it is parsed
    notification = parse_message(json.dumps(message), version)
    # Then the order facts are found wherever the shape put them; only v2 names the ASIN
    assert isinstance(notification, OrderPlaced)
    assert notification.serial == "SN-0001"
    assert notification.notification_time == AT
    assert notification.schema_version == version
    info = notification.order_info
    assert (info.instance_id, info.slot_id, info.quantity, info.unit) == (
        "amzn1.dash.v2.o.ORDER1",
        "Filter",
        2,
        "count",
    )
    assert info.eta == AT + timedelta(days=3)
    assert info.asin == ("B00FILTER1" if version == "2" else None)


def test_cancelled_carries_only_instance_and_slot():
    # Given a cancellation, which DRS sends without product details or reason
    message = order_message(sim_notes.ORDER_CANCELLED, "2")
    # When it is parsed
    notification = parse_message(message, "2")
    # Then it is an OrderCancelled with no quantity and no delivery date
    assert isinstance(notification, OrderCancelled)
    assert notification.order_info.quantity is None and notification.order_info.eta is None


def test_unknown_fields_old_spelling_and_missing_optional_keys_are_tolerated():
    # Given a message with extra keys, the old LWAClientId spelling, no customerInfo, no productIdentifier
    # and an empty delivery date
    message = {
        "notificationInfo": {
            "notificationType": "ItemShippedNotification",
            "LWAClientId": "amzn1.application-oa2-client.old",
            "notificationTime": "2016-12-02T21:09:58.689Z",
            "notificationId": "amzn1.dash.notification.v1.abc",
            "somethingNew": 1,
        },
        "deviceInfo": {"deviceIdentifier": {"serialNumber": "SN-0001"}},
        "orderInfo": {
            "instanceId": "O1",
            "slotId": "Filter",
            "productInfo": [{"quantity": 1}],
            "estimatedDeliveryDate": "",
            "x": {},
        },
    }
    # When it is parsed
    notification = parse_message(message)
    # Then it parses, with the client id read from the old key
    assert isinstance(notification, ItemShipped)
    assert notification.notification_info.lwa_client_id == "amzn1.application-oa2-client.old"
    assert notification.customer_info is None and notification.model_id is None
    assert notification.order_info.eta is None and notification.order_info.quantity == 1


@pytest.mark.parametrize("version", ["1", "2"])
def test_subscription_statuses_v1_are_flags_v2_carry_products(version):
    # Given a SubscriptionChanged with one picked and one cleared slot
    device = DRS.device({"Filter": FILTER, "Cleaner": None})
    message = sim_notes.build_message(
        sim_notes.SUBSCRIPTION_CHANGED, client_id="c", device=device, at=AT, version=version
    )
    # When it is parsed
    notification = parse_message(message, version)
    # Then v1 says only "subscribed" (product not told: None); v2 names the product or [] when cleared
    assert isinstance(notification, SubscriptionChanged)
    statuses = notification.subscription_info.slots_subscription_status
    assert statuses["Filter"].subscribed and not statuses["Cleaner"].subscribed
    if version == "1":
        assert statuses["Filter"].product_info_list is None
    else:
        assert statuses["Filter"].product.asin == "B00FILTER1"
        assert statuses["Cleaner"].product_info_list == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda m: m["deviceInfo"].pop("deviceIdentifier"),
        lambda m: m["notificationInfo"].update(notificationTime="yesterday"),
        lambda m: m["notificationInfo"].pop("notificationId"),
        lambda m: m["orderInfo"].pop("instanceId"),
        lambda m: m["deviceInfo"]["deviceIdentifier"].update(serialNumber="has space"),
        lambda m: m["orderInfo"]["productInfo"][0].update(quantity=-1),
    ],
    ids=["no-device", "bad-time", "no-id", "no-instance", "bad-serial", "negative-quantity"],
)
def test_a_message_missing_what_it_needs_is_malformed(breakage):
    # Given an OrderPlaced with one required part missing or wrong
    message = order_message(sim_notes.ORDER_PLACED, "2")
    breakage(message)
    # When it is parsed, Then it is malformed, and the reason names where
    with pytest.raises(MalformedNotification, match="OrderPlacedNotification"):
        parse_message(message, "2")


def test_an_unknown_type_is_unsupported_not_malformed():
    # Given a well-formed message of a type DRS might add later
    message = order_message(sim_notes.ORDER_PLACED, "2")
    message["notificationInfo"]["notificationType"] = "OrderDelayedNotification"
    # When it is parsed, Then it is unsupported (acknowledged by the handler), naming the type
    with pytest.raises(UnsupportedNotification) as raised:
        parse_message(message)
    assert raised.value.kind == "OrderDelayedNotification"


def test_decode_record_reads_the_sns_envelope_and_its_version_attribute():
    # Given the simulator's SNS envelopes of a v1 and a v2 message
    v2 = sim_notes.sns_envelope(order_message(sim_notes.ORDER_PLACED, "2"), topic_arn="t", version="2", at=AT)
    v1 = sim_notes.sns_envelope(order_message(sim_notes.ORDER_PLACED, "1"), topic_arn="t", version="1", at=AT)
    # When the SQS bodies are decoded
    # Then the version comes from the attribute, and v1's envelope has no MessageAttributes key at all
    assert "MessageAttributes" not in v1
    assert decode_record(json.dumps(v2)).schema_version == "2"
    assert decode_record(json.dumps(v1)).schema_version == "1"


def test_decode_record_with_raw_delivery_reads_the_sqs_attribute():
    # Given a raw-delivered body (the DRS message itself) with version among the SQS attributes
    body = json.dumps(DRS.message(sim_notes.DEVICE_DEREGISTERED, AT, "2"))
    attributes = {"version": {"stringValue": "2.0", "dataType": "String"}}
    # When decoded, Then it parses with the attribute's version
    notification = decode_record(body, attributes)
    assert isinstance(notification, DeviceDeregistered) and notification.schema_version == "2"


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"Type": "Notification"}),
        json.dumps({"Type": "Notification", "Message": "{"}),
    ],
)
def test_bodies_that_are_not_notifications_are_malformed(body):
    # Given a record body that is not an SNS notification of a DRS message
    # When decoded, Then it is malformed
    with pytest.raises(MalformedNotification):
        decode_record(body)


def test_schema_version_of_the_attribute():
    # Given the attribute values DRS may send, Then absent means v1 and "2.0" means v2
    assert (schema_version(None), schema_version("2.0"), schema_version("2")) == ("1", "2", "2")


@pytest.mark.parametrize("value", [2.0, 2, "2.0"])
def test_a_numeric_version_attribute_is_read_like_the_string(value):
    # Given an SNS envelope whose version attribute is a JSON number, as in DRS's own sample
    # ("Type": "Number", "Value": 2.0), and the raw-delivery form of the same
    envelope = sim_notes.sns_envelope(
        order_message(sim_notes.ORDER_PLACED, "2"), topic_arn="t", version="2", at=AT
    )
    envelope["MessageAttributes"]["version"] = {"Type": "Number", "Value": value}
    raw = json.dumps(order_message(sim_notes.ORDER_PLACED, "2"))
    # When decoded, Then both parse as v2 messages
    assert decode_record(json.dumps(envelope)).schema_version == "2"
    assert decode_record(raw, {"version": {"stringValue": value, "dataType": "Number"}}).schema_version == "2"
