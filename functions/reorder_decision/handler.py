"""Reorder decision: state-table stream records of slots flagged ``reorderDue`` → at most one DRS order;
and of slots flagged ``slotReportDue`` by a refill → their prompt ``slotStatus``.

The event source mapping's filters (``schema.REORDER_FUNCTION_FILTER_PATTERNS``) let only those records
invoke this function. Each record is handled on its own (partial batch responses): a record whose replenish
failed retryably is reported as failed, so the mapping retries it (bisecting the batch, bounded), then
hands it to its on-failure destination; the rest of the batch is done.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from drs_core import dependencies, schema
from drs_core.clock import default_clock
from drs_core.observability import logger, metrics
from drs_core.services.reordering import reorder_slot
from drs_core.services.slot_reports import report_refilled_slot
from drs_core.settings import load_settings

load_settings(
    required=["STATE_TABLE", "TOKENS_TABLE", "TOKENS_KMS_KEY_ID", "LWA_CLIENT_ID", "LWA_CLIENT_SECRET_NAME"]
)
# A batch whose records all failed answers the same partial response as any other (every record listed):
# the mapping retries from the first failed record either way, and the function's error metric stays for
# real faults.
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


def record_handler(record: DynamoDBRecord) -> str:
    """One flagged slot: report a refill's used-up package, then decide and, if needed, order it."""
    keys = record.dynamodb.keys if record.dynamodb else {}
    serial = schema.serial_from_pk(str(keys[schema.STATE_PK]))
    slot_id = str(keys[schema.STATE_SK])[len(schema.SLOT_PREFIX) :]
    logger.append_keys(serial=serial, slotId=slot_id, eventId=record.event_id)
    image = (record.dynamodb.new_image if record.dynamodb else None) or {}
    outcomes = []
    if image.get(schema.SLOT_REPORT_DUE_ATTR) is True:
        reported = report_refilled_slot(
            serial,
            slot_id,
            store=dependencies.usage_store(),
            repository=dependencies.repository(),
            reports=dependencies.report_store(),
            vault=dependencies.token_vault(),
            drs=dependencies.drs_client(),
            now=default_clock().now(),
        )
        logger.info("refill report", extra={"outcome": reported.value})
        outcomes.append(reported.value)
    if image.get(schema.REORDER_DUE_ATTR) is not True:
        return ",".join(outcomes)
    outcome = reorder_slot(
        serial,
        slot_id,
        repository=dependencies.repository(),
        store=dependencies.usage_store(),
        vault=dependencies.token_vault(),
        drs=dependencies.drs_client(),
        now=default_clock().now(),
    )
    logger.info("reorder decision", extra={"outcome": outcome.value})
    return ",".join([*outcomes, outcome.value])


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
