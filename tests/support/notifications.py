"""A real SNS → SQS path in moto for DRS notifications, and the Lambda SQS event built from what it delivers.

``SnsSqsPath`` creates a topic, a queue and the subscription (raw message delivery off, as deployed);
``publish`` sends a DRS message like DRS does (the ``version`` attribute only for v2), ``drain_event``
receives everything queued and shapes it exactly as Lambda's SQS event source hands it to a function.
``TopicPublisher`` lets a ``SimulatorServer`` publish its own notifications to that topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drs_core.clock import to_iso
from sandbox.simulator import notifications as sim_notes
from sandbox.simulator.records import Device as SimDevice
from sandbox.simulator.records import Order as SimOrder
from sandbox.simulator.records import OrderState as SimOrderState
from sandbox.simulator.records import Product

REGION = "us-east-1"
CLIENT_ID = "amzn1.application-oa2-client.sandbox"


class SnsSqsPath:
    """Topic → queue in the active moto account (call inside ``mock_aws`` / the ``aws`` fixture)."""

    def __init__(self, name: str = "drs-notifications") -> None:
        import boto3

        self.sns = boto3.client("sns", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.topic_arn = self.sns.create_topic(Name=name)["TopicArn"]
        self.queue_url = self.sqs.create_queue(QueueName=f"{name}-queue")["QueueUrl"]
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.sns.subscribe(
            TopicArn=self.topic_arn,
            Protocol="sqs",
            Endpoint=self.queue_arn,
            Attributes={"RawMessageDelivery": "false"},
        )

    def publish(self, message: dict[str, Any] | str, version: str = "2") -> None:
        """Publish one DRS message; v2 carries the SNS attribute ``version`` = ``2.0``, v1 none."""
        body = message if isinstance(message, str) else json.dumps(message)
        attributes = {"version": {"DataType": "String", "StringValue": "2.0"}} if version == "2" else {}
        self.sns.publish(TopicArn=self.topic_arn, Message=body, MessageAttributes=attributes)

    def publish_envelope(self, envelope: dict[str, Any]) -> None:
        """Re-publish a simulator envelope (its ``Message`` and ``MessageAttributes``) to the topic."""
        attributes = {
            name: {"DataType": value["Type"], "StringValue": value["Value"]}
            for name, value in (envelope.get("MessageAttributes") or {}).items()
        }
        self.sns.publish(TopicArn=self.topic_arn, Message=envelope["Message"], MessageAttributes=attributes)

    def receive(self) -> list[dict[str, Any]]:
        """Every message waiting in the queue (not deleted: the test plays Lambda's poller)."""
        messages: list[dict[str, Any]] = []
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            )
            batch = answer.get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)

    def drain_event(self) -> dict[str, Any]:
        """The Lambda SQS event of everything queued now (``{"Records": [...]}``)."""
        return sqs_event(self.receive(), self.queue_arn)

    def acknowledge(self, event: dict[str, Any], answer: dict[str, Any]) -> None:
        """Delete what the function did not report failed, as Lambda's event source mapping does."""
        failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
        for record in event["Records"]:
            if record["messageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Messages from ``ReceiveMessage`` shaped as Lambda's SQS event source delivers them."""
    return {"Records": [_record(message, queue_arn) for message in messages]}


def _record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


class TopicPublisher:
    """A simulator ``Publisher`` that publishes every envelope to the moto topic."""

    def __init__(self, path: SnsSqsPath) -> None:
        self.path = path

    def publish(self, envelope: dict[str, object]) -> None:
        self.path.publish_envelope(envelope)  # type: ignore[arg-type]


# --- DRS messages, built with the simulator's own builders -----------------------------------------


@dataclass
class DrsMessages:
    """Builds DRS messages for one device with ``sandbox/simulator/notifications.py``."""

    serial: str
    model_id: str = "WaterFilterPro"
    customer_id: str = "amzn1.account.TESTCUSTOMER"
    is_test_device: bool = False

    def device(self, slots: dict[str, Product | None]) -> SimDevice:
        return SimDevice(
            registration_id=1,
            serial=self.serial,
            model_id=self.model_id,
            customer_id=self.customer_id,
            lwa_client_id=CLIENT_ID,
            is_test_device=self.is_test_device,
            slots=slots,
            registered_at=datetime(2026, 1, 1),
        )

    def order(self, instance_id: str, slot_id: str, product: Product, placed_at: datetime | None) -> SimOrder:
        return SimOrder(
            instance_id=instance_id,
            registration_id=1,
            serial=self.serial,
            slot_id=slot_id,
            product=product,
            is_test=self.is_test_device,
            requested_at=placed_at or datetime(2026, 1, 1),
            state=SimOrderState.PLACED,
            placed_at=placed_at,
        )

    def message(
        self,
        kind: str,
        at: datetime,
        version: str,
        *,
        slots: dict[str, Product | None] | None = None,
        order: SimOrder | None = None,
    ) -> dict[str, Any]:
        return sim_notes.build_message(
            kind,
            client_id=CLIENT_ID,
            device=self.device(slots or {}),
            at=at,
            version=version,
            order=order,
        )


def iso(when: datetime) -> str:
    return to_iso(when)
