"""DRS notifications: the six payloads (v1 and v2 shapes), their SNS envelope, and how they are delivered.

Delivery imitates a standard SNS topic feeding SQS: at-least-once (duplicates keep their MessageId),
possibly out of order (one message held back until the next one, or the next clock advance), and
possibly late (held until the simulated clock passes ``delaySeconds`` after the event).
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from drs_core.clock import to_iso

from .records import Device, Order

ORDER_PLACED = "OrderPlacedNotification"
ORDER_CANCELLED = "OrderCancelledNotification"
ITEM_SHIPPED = "ItemShippedNotification"
DEVICE_REGISTERED = "DeviceRegisteredNotification"
DEVICE_DEREGISTERED = "DeviceDeregisteredNotification"
SUBSCRIPTION_CHANGED = "SubscriptionChangedNotification"

NOTIFICATION_INFO_VERSION = "2015-06-05"
VERSIONS = ("1", "2")


def build_message(
    notification_type: str,
    *,
    client_id: str,
    device: Device,
    at: datetime,
    version: str,
    order: Order | None = None,
) -> dict[str, object]:
    """The JSON document DRS puts in the SNS ``Message`` for one event, in the v1 or v2 shape."""
    message: dict[str, object] = {
        "notificationInfo": {
            "notificationType": notification_type,
            "lwaClientId": client_id,
            "notificationTime": to_iso(at),
            "notificationId": f"amzn1.dash.notification.v1.{uuid.uuid4()}",
            "version": NOTIFICATION_INFO_VERSION,
        },
        "deviceInfo": {
            "deviceIdentifier": {"serialNumber": device.serial},
            "productIdentifier": {"modelId": device.model_id},
        },
        "customerInfo": {"directedCustomerId": device.customer_id},
    }
    if notification_type == ORDER_CANCELLED and order is not None:
        # DRS sends no reason and no product details with a cancellation.
        message["orderInfo"] = {"instanceId": order.instance_id, "slotId": order.slot_id}
    elif order is not None:
        message["orderInfo"] = _order_info(order, version)
    if notification_type == SUBSCRIPTION_CHANGED:
        message["subscriptionInfo"] = {"slotsSubscriptionStatus": subscription_status(device, version)}
    return message


def subscription_status(device: Device, version: str) -> dict[str, object]:
    """The device's full slot map: v1 ``{slot: subscribed}``, v2 ``{slot: {subscribed, productInfoList}}``."""
    if version == "1":
        return {slot_id: product is not None for slot_id, product in device.slots.items()}
    return {
        slot_id: {
            "subscribed": product is not None,
            "productInfoList": [product.to_json()] if product is not None else [],
        }
        for slot_id, product in device.slots.items()
    }


def _order_info(order: Order, version: str) -> dict[str, object]:
    eta = order.estimated_delivery_date
    eta_text = to_iso(eta) if eta else ""
    product = order.product
    if version == "1":
        return {
            "instanceId": order.instance_id,
            "slotId": order.slot_id,
            "productInfo": [{"quantity": product.quantity, "unit": product.unit}],
            "estimatedDeliveryDate": eta_text,
        }
    return {
        "instanceId": order.instance_id,
        "slotId": order.slot_id,
        "productInfo": [
            {
                "quantity": product.quantity,
                "unit": product.unit,
                "asin": product.asin,
                "estimatedDeliveryDate": eta_text,
            }
        ],
    }


def sns_envelope(
    message: dict[str, object], *, topic_arn: str, version: str, at: datetime
) -> dict[str, object]:
    """The SNS notification as an SQS subscriber (raw delivery off) receives it.

    Like SNS, v1 messages carry no ``MessageAttributes`` key at all; v2 ones carry ``version`` = 2.0.
    """
    envelope: dict[str, object] = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic_arn,
        "Message": json.dumps(message, separators=(",", ":")),
        "Timestamp": to_iso(at),
        "SignatureVersion": "1",
        "Signature": "SIMULATED",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-simulated.pem",
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic_arn}",
    }
    if version == "2":
        envelope["MessageAttributes"] = {"version": {"Type": "String", "Value": "2.0"}}
    return envelope


@dataclass
class NotificationConfig:
    """How notifications are delivered (defaults: v2, no duplicates, in order, no delay).

    ``test_cancel_notifications``: whether cancel-test-order publishes ``OrderCancelledNotification``
    for each test order it cancels. No DRS source says it does, so by default it does not; the backend
    takes the cancel call's answer as the truth either way.
    """

    version: str = "2"
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    delay_seconds: float = 0.0
    seed: int = 0
    test_cancel_notifications: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "duplicateRate": self.duplicate_rate,
            "reorderRate": self.reorder_rate,
            "delaySeconds": self.delay_seconds,
            "seed": self.seed,
            "testCancelNotifications": self.test_cancel_notifications,
        }


@dataclass
class _Delayed:
    due: datetime
    order: int
    envelope: dict[str, object]


class NotificationChannel:
    """The topic between DRS and the backend. Not thread-safe: the Simulator calls it under its lock.

    Every delivery is appended to ``deliveries`` (what ``GET /__sim/notifications`` shows) and to the
    outbox, which the Simulator drains to the publisher outside its lock.
    """

    def __init__(self, topic_arn: str) -> None:
        self.topic_arn = topic_arn
        self.config = NotificationConfig()
        self.deliveries: list[dict[str, object]] = []
        self._rng = random.Random(self.config.seed)
        self._held: dict[str, object] | None = None
        self._delayed: list[_Delayed] = []
        self._delay_order = itertools.count()
        self._outbox: list[dict[str, object]] = []

    def configure(self, **changes: object) -> NotificationConfig:
        """Change only the named fields (``version``, ``duplicate_rate``, ...); a ``seed`` re-seeds."""
        names = {f.name for f in fields(NotificationConfig)}
        for name, value in changes.items():
            if name not in names:
                raise ValueError(f"unknown notification setting {name}")
            setattr(self.config, name, value)
        if "seed" in changes:
            self._rng = random.Random(self.config.seed)
        return self.config

    def emit(
        self, message: dict[str, object], *, at: datetime, now: datetime, hold: timedelta = timedelta(0)
    ) -> None:
        """Publish one event's message (built in ``config.version``) that happened at ``at``; ``hold``
        is an extra delay of this message alone (the world's), on top of ``delaySeconds``."""
        envelope = sns_envelope(message, topic_arn=self.topic_arn, version=self.config.version, at=at)
        if self.config.delay_seconds > 0 or hold > timedelta(0):
            due = at + timedelta(seconds=self.config.delay_seconds) + hold
            self._delayed.append(_Delayed(due, next(self._delay_order), envelope))
            return
        self._dispatch(envelope, now)

    def next_delayed_due(self) -> datetime | None:
        """When the earliest delayed message becomes due, if any is waiting."""
        return min((item.due for item in self._delayed), default=None)

    def release_next_delayed(self, now: datetime) -> None:
        """Send the earliest delayed message on its way (the caller checked it is due)."""
        item = min(self._delayed, key=lambda entry: (entry.due, entry.order))
        self._delayed.remove(item)
        self._dispatch(item.envelope, now)

    def release_held(self, now: datetime) -> None:
        """A held-back message goes out at the latest at the next clock advance."""
        if self._held is not None:
            held, self._held = self._held, None
            self._deliver(held, now)

    def has_outbox(self) -> bool:
        return bool(self._outbox)

    def take_outbox(self) -> list[dict[str, object]]:
        """The deliveries not yet handed to the publisher, in delivery order."""
        outbox, self._outbox = self._outbox, []
        return outbox

    def _dispatch(self, envelope: dict[str, object], now: datetime) -> None:
        # Draw only for enabled switches, so turning one on does not shift the other's decisions.
        if (
            self._held is None
            and self.config.reorder_rate > 0
            and self._rng.random() < self.config.reorder_rate
        ):
            self._held = envelope
            return
        self._deliver(envelope, now)
        self.release_held(now)

    def _deliver(self, envelope: dict[str, object], now: datetime) -> None:
        copies = 1
        if self.config.duplicate_rate > 0 and self._rng.random() < self.config.duplicate_rate:
            copies = 2
        for _ in range(copies):
            self.deliveries.append({"seq": len(self.deliveries) + 1, "at": to_iso(now), "envelope": envelope})
            # The publisher gets its own copy, so nothing it does can alter the recorded log.
            self._outbox.append(copy.deepcopy(envelope))
