"""DRS notifications: SQS (fed by the SNS topic DRS publishes to) → one state change per notification.

Partial batch responses: a record that cannot be parsed (or whose write fails) fails alone and, after
the queue's ``maxReceiveCount``, lands in the DLQ; the rest of the batch is acknowledged (when every
record fails, Powertools fails the invocation and SQS retries them all). Each notification is
applied once per ``notificationId`` (Powertools idempotency on the idempotency table); the service is
also safe on its own against repeats and out-of-order delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from drs_core import dependencies
from drs_core.adapters.notification_store import NotificationStore
from drs_core.notifications.models import (
    MalformedNotification,
    Notification,
    OrderNotification,
    UnsupportedNotification,
    decode_record,
)
from drs_core.observability import logger, metrics
from drs_core.services.notifications import Outcome, count_outcome, handle_notification
from drs_core.settings import load_settings

# Long enough to cover every redelivery SQS or a DLQ redrive can make; the state guards cover the rest.
IDEMPOTENCY_SECONDS = 7 * 24 * 3600

settings = load_settings(required=["STATE_TABLE", "TOKENS_TABLE", "IDEMPOTENCY_TABLE"])
processor = BatchProcessor(event_type=EventType.SQS)
store = NotificationStore(str(settings.state_table))
idempotency = IdempotencyConfig(
    expires_after_seconds=IDEMPOTENCY_SECONDS,
    # Called only when the stored result answers instead of the function: count it as a duplicate.
    response_hook=lambda _response, _record: Outcome.DUPLICATE.value,
)


def _apply(*, identity: dict[str, str], notification: Notification) -> str:
    """Apply ``notification``; ``identity`` (its ``notificationId``) is what idempotency keys on."""
    return handle_notification(notification, store=store, tokens=dependencies.token_vault()).value


@cache
def apply_once() -> Callable[..., str]:
    """``_apply`` unless that ``notificationId`` was applied before (Powertools idempotency), built on
    the first record on the store's client: one DynamoDB client, built when first needed."""
    persistence = DynamoDBPersistenceLayer(
        table_name=str(settings.idempotency_table), boto3_client=store.client
    )
    once = idempotent_function(
        data_keyword_argument="identity", persistence_store=persistence, config=idempotency
    )
    return once(_apply)


def record_handler(record: SQSRecord) -> str:
    """One SQS record: decode the SNS envelope, apply the notification once, count the outcome."""
    try:
        notification = decode_record(record.body, record.raw_event.get("messageAttributes"))
    except MalformedNotification as err:
        logger.error("malformed notification", extra={"messageId": record.message_id, "reason": str(err)})
        count_outcome("Unparsed", Outcome.MALFORMED)
        raise
    except UnsupportedNotification as err:
        logger.warning(
            "notification type not handled", extra={"messageId": record.message_id, "type": err.kind}
        )
        count_outcome("Other", Outcome.IGNORED)
        return Outcome.IGNORED.value
    logger.append_keys(**_correlation(notification))
    try:
        outcome = Outcome(
            apply_once()(identity={"notificationId": notification.notification_id}, notification=notification)
        )
    except Exception:
        # The record fails; SQS delivers it again after the visibility timeout, then to the DLQ.
        logger.exception("notification failed; it will be retried")
        count_outcome(notification.kind.value, Outcome.FAILED)
        raise
    else:
        logger.info("notification handled", extra={"outcome": outcome.value})
        count_outcome(notification.kind.value, outcome)
        return outcome.value
    finally:
        logger.remove_keys(list(_CORRELATION_KEYS))


_CORRELATION_KEYS = ("serial", "notificationId", "notificationType", "slotId", "instanceId")


def _correlation(notification: Notification) -> dict[str, Any]:
    keys: dict[str, Any] = {
        "serial": notification.serial,
        "notificationId": notification.notification_id,
        "notificationType": notification.kind.value,
    }
    if isinstance(notification, OrderNotification):
        keys["slotId"] = notification.order_info.slot_id
        keys["instanceId"] = notification.order_info.instance_id
    return keys


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """SQS event → ``{"batchItemFailures": [...]}``."""
    idempotency.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
