"""Report worker: SQS report jobs → ``deviceStatus`` and ``slotStatus`` for each job's devices.

Partial batch responses: a job with devices left to retry (a retryable DRS/LWA fault, a device leased
by another worker, time running out) fails alone and SQS delivers it again after the visibility
timeout; what it already reported is marked and not repeated. Reserved concurrency bounds the DRS
call rate (infra/reporting.py).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from drs_core import dependencies
from drs_core.adapters.report_store import ReportStore
from drs_core.observability import logger, metrics
from drs_core.services.reporting import LEASE_MARGIN_SECONDS, ReportJob, default_upkeep, run_job
from drs_core.settings import load_settings

settings = load_settings(
    required=["STATE_TABLE", "TOKENS_TABLE", "TOKENS_KMS_KEY_ID", "LWA_CLIENT_ID", "LWA_CLIENT_SECRET_NAME"]
)
# A job that fails for every record is still a partial answer: SQS retries exactly those records.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
store = ReportStore(str(settings.state_table))


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    """One job: report its devices; raises (the record fails) if any must be retried."""
    job = ReportJob.from_json(record.body)
    logger.append_keys(messageId=record.message_id, reportDay=job.day, bucket=job.bucket)
    repository = dependencies.repository()
    run_job(
        job,
        store=store,
        repository=repository,
        vault=dependencies.token_vault(),
        drs=dependencies.drs_client(),
        # The lease outlives this invocation, so no other worker can overlap a device while it runs.
        lease_seconds=lambda_context.get_remaining_time_in_millis() / 1000 + LEASE_MARGIN_SECONDS,
        time_left=lambda: lambda_context.get_remaining_time_in_millis() / 1000,
        # Delivery inference for overdue orders, and the daily forecast refresh of consumed slots.
        upkeep=default_upkeep(repository, dependencies.usage_store()),
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
