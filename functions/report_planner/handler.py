"""Report planner: EventBridge Scheduler, hourly → the bucket of that hour's devices → SQS report jobs.

The schedule's input carries its own scheduled time (``<aws.scheduler.scheduled-time>``), so a late or
retried invocation still plans the bucket it was meant for; without one (a manual run) the bucket of
the current hour is planned. At most one plan per (report day, bucket): Powertools idempotency.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from drs_core.adapters.report_queue import ReportQueue
from drs_core.adapters.report_store import ReportStore
from drs_core.clock import default_clock
from drs_core.observability import logger, metrics
from drs_core.services.reporting import plan_reports_once
from drs_core.settings import load_settings

settings = load_settings(required=["STATE_TABLE", "REPORT_QUEUE_URL", "IDEMPOTENCY_TABLE"])
store = ReportStore(str(settings.state_table))
queue = ReportQueue(str(settings.report_queue_url))
persistence = DynamoDBPersistenceLayer(table_name=str(settings.idempotency_table))


class ScheduledInvocation(BaseModel):
    """The schedule target's input: ``{"scheduledTime": "<aws.scheduler.scheduled-time>"}``."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    scheduled_time: datetime | None = Field(default=None, alias="scheduledTime")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    invocation = parse(event=event or {}, model=ScheduledInvocation)
    scheduled_at = invocation.scheduled_time or default_clock().now()
    logger.append_keys(scheduledTime=scheduled_at.isoformat())
    result = plan_reports_once(
        scheduled_at, store=store, queue=queue, persistence=persistence, lambda_context=context
    )
    return {"day": result.day, "bucket": result.bucket, "due": result.due, "jobs": result.jobs}
