"""Report planner: EventBridge Scheduler, hourly → the bucket of that hour's devices → SQS report jobs.

The schedule's input carries its own scheduled time (``<aws.scheduler.scheduled-time>``), so a late or
retried invocation still plans the bucket it was meant for; without one (a manual run) the bucket of
the current hour is planned. At most one plan per (report day, bucket): Powertools idempotency.

The input has one optional field, read by hand: the planner runs once an hour, so nearly every run is a
cold start, and leaving pydantic and the Powertools parser out of its imports takes ~45 ms off each
(measured in a fresh interpreter as bench.cold_start does: 153 ms against 201 ms with both imported).
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.typing import LambdaContext

from drs_core.adapters.report_queue import ReportQueue
from drs_core.adapters.report_store import ReportStore
from drs_core.clock import default_clock, parse_iso
from drs_core.observability import logger, metrics
from drs_core.services.reporting import plan_reports_once
from drs_core.settings import load_settings

settings = load_settings(required=["STATE_TABLE", "REPORT_QUEUE_URL", "IDEMPOTENCY_TABLE"])
store = ReportStore(str(settings.state_table))
queue = ReportQueue(str(settings.report_queue_url))


@cache
def persistence() -> DynamoDBPersistenceLayer:
    """The idempotency layer, built on the first run on the store's client: one DynamoDB client, built
    when first needed, like every adapter of ours."""
    return DynamoDBPersistenceLayer(table_name=str(settings.idempotency_table), boto3_client=store.client)


class InvalidScheduleInput(ValueError):
    """The schedule's input is not ``{"scheduledTime": "<ISO 8601 time>"}``: the run fails (retried)."""


def scheduled_time(event: Any) -> datetime | None:
    """``scheduledTime`` of the schedule target's input, ``None`` when absent (a manual run)."""
    if not event:
        return None
    if not isinstance(event, dict):
        raise InvalidScheduleInput(f"the input is a {type(event).__name__}, not an object")
    value = event.get("scheduledTime")
    if value is None:
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return parse_iso(value)
    raise InvalidScheduleInput(f"scheduledTime {value!r} is not an ISO 8601 time")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scheduled_at = scheduled_time(event) or default_clock().now()
    logger.append_keys(scheduledTime=scheduled_at.isoformat())
    result = plan_reports_once(
        scheduled_at, store=store, queue=queue, persistence=persistence(), lambda_context=context
    )
    return {"day": result.day, "bucket": result.bucket, "due": result.due, "jobs": result.jobs}
