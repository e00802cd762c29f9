"""Reporting (docs/architecture.md §1 flow 5): EventBridge Scheduler → report planner → SQS report jobs (+DLQ)
→ report worker with bounded concurrency → DRS ``deviceStatus`` / ``slotStatus``.

Context: ``reportScheduleExpression`` (default ``cron(0 * * * ? *)``: on the hour, one of 24 buckets per
run; a ``rate(1 hour)`` would fire at deploy time + n hours instead) and ``reportWorkerConcurrency``
(default 10: the most report workers the job queue's event source runs at once, i.e. the DRS call budget
— 10 workers making ~5 calls/s each keep 1 M devices' daily reports to about a third of each hour).

The cap is the SQS event source's maximum concurrency, not a reserved concurrency: reserving takes from
the account's concurrency quota, and Lambda keeps 100 of it unreserved, so in an account with a low
quota (new accounts often have 10) a reservation fails the deploy.

Scheduler invokes the planner asynchronously. A failed delivery (Scheduler's bounded retries) and a run
that failed its bounded asynchronous retries both end in the planner DLQ, whose alarm notifies the alarm
topic.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from drs_core import schema
from infra.context import whole_number
from infra.data import Data
from infra.functions import ReplenishmentFunction, SharedLayers
from infra.queues import failure_destination_queue

# Every hour on the hour (UTC): the bucket a run plans is the hour of its scheduled time.
DEFAULT_SCHEDULE = "cron(0 * * * ? *)"
DEFAULT_WORKER_CONCURRENCY = 10
# An SQS event source's maximum concurrency must lie between 2 and 1000.
WORKER_CONCURRENCY_RANGE = (2, 1000)
# Scheduler: attempts after a failed delivery to Lambda, and how long an undelivered run may wait.
SCHEDULE_RETRY_ATTEMPTS = 3
SCHEDULE_MAX_EVENT_AGE = Duration.minutes(30)
# Lambda's own retries of a planner run that failed (the plan is idempotent per day and bucket), and
# how old a run may get: past the hour, the next run plans its own bucket anyway.
PLANNER_ASYNC_RETRY_ATTEMPTS = 2
PLANNER_MAX_EVENT_AGE = Duration.hours(1)
PLANNER_TIMEOUT = Duration.minutes(5)
# One job (25 devices) takes ~15 s; the worker stops starting devices 65 s before its timeout.
WORKER_TIMEOUT = Duration.minutes(2)
# AWS's guidance for SQS event sources: visibility timeout at least six times the function timeout.
JOB_VISIBILITY_TIMEOUT = Duration.minutes(12)
# Deliveries of one job before it is parked in the DLQ (about an hour of retries at 12 minutes each).
JOB_MAX_RECEIVES = 5
METRICS_NAMESPACE = "DrsReplenishment"


class _InvokePlanner(targets.LambdaInvoke):
    """``LambdaInvoke`` whose role may invoke the unqualified planner function only (the stock target
    also grants ``<function>:*``, every version and alias, which the schedule never uses)."""

    def _add_target_action_to_role(self, role: iam.IRole) -> None:
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self._target_arn])
        )


class Reporting(Construct):
    """The schedule, the planner, the job queue and its DLQ, the worker, and their alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: Data,
        layers: SharedLayers,
        lwa_client_id: str,
        lwa_client_secret_name: str,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._data = data
        self._layers = layers
        self._removal_policy = removal_policy
        self.schedule_expression = str(
            self.node.try_get_context("reportScheduleExpression") or DEFAULT_SCHEDULE
        )
        self.worker_concurrency = worker_concurrency(self)
        self.dead_letter_queue = self._build_dead_letter_queue()
        self.queue = self._build_queue()
        self.planner_dead_letter_queue = self._build_planner_dead_letter_queue()
        self.planner = self._build_planner()
        self.worker = self._build_worker(lwa_client_id, lwa_client_secret_name)
        self.schedule = self._build_schedule()
        self.dlq_alarm = self._build_dlq_alarm()
        self.planner_dlq_alarm = self._build_planner_dlq_alarm()
        self.coverage_alarm = self._build_coverage_alarm()

    # --- queues --------------------------------------------------------------------------------------

    def _build_dead_letter_queue(self) -> sqs.Queue:
        return sqs.Queue(
            self,
            "JobsDlq",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self._data.key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=self._removal_policy,
        )

    def _build_queue(self) -> sqs.Queue:
        return sqs.Queue(
            self,
            "Jobs",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self._data.key,
            # The producer's and consumer's KMS calls are cached for this long, not made per message.
            data_key_reuse=Duration.minutes(15),
            enforce_ssl=True,
            visibility_timeout=JOB_VISIBILITY_TIMEOUT,
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=JOB_MAX_RECEIVES, queue=self.dead_letter_queue
            ),
            removal_policy=self._removal_policy,
        )

    def _build_planner_dead_letter_queue(self) -> sqs.Queue:
        # What lands here is the schedule's input ({"scheduledTime"}) or Lambda's record of a failed run.
        return failure_destination_queue(
            self,
            "PlannerDlq",
            senders="of the planner's schedule (undelivered runs) and of the planner's asynchronous "
            "invocations (failed runs)",
            removal_policy=self._removal_policy,
        )

    # --- functions -----------------------------------------------------------------------------------

    def _build_planner(self) -> ReplenishmentFunction:
        state, idempotency, key = self._data.state_table, self._data.idempotency_table, self._data.key
        fn = ReplenishmentFunction(
            self,
            "PlannerFn",
            name="report_planner",
            description="Pages one hourly report bucket of devices and enqueues report jobs",
            layers=self._layers,
            environment={
                "STATE_TABLE": state.table_name,
                "IDEMPOTENCY_TABLE": idempotency.table_name,
                "REPORT_QUEUE_URL": self.queue.queue_url,
            },
            timeout=PLANNER_TIMEOUT,
            removal_policy=self._removal_policy,
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"], resources=[f"{state.table_arn}/index/{schema.REPORT_INDEX}"]
            )
        )
        # One plan per (day, bucket): Powertools idempotency records.
        self._data.grant_idempotency(fn.role)
        fn.role.add_to_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.queue.queue_arn])
        )
        # Reading the encrypted tables, and sending to a queue encrypted with the same key.
        fn.role.add_to_policy(
            iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn])
        )
        # Scheduler invokes asynchronously: a run that fails is retried a bounded number of times by
        # Lambda, then recorded in the planner DLQ (its alarm notifies the operators).
        fn.function.configure_async_invoke(
            retry_attempts=PLANNER_ASYNC_RETRY_ATTEMPTS,
            max_event_age=PLANNER_MAX_EVENT_AGE,
            on_failure=destinations.SqsDestination(self.planner_dead_letter_queue),
        )
        return fn

    def _build_worker(self, lwa_client_id: str, lwa_client_secret_name: str) -> ReplenishmentFunction:
        state = self._data.state_table
        fn = ReplenishmentFunction(
            self,
            "WorkerFn",
            name="report_worker",
            description="Sends the daily DRS deviceStatus and the slotStatus of consumed slots",
            layers=self._layers,
            environment=self._data.token_environment(lwa_client_id, lwa_client_secret_name),
            timeout=WORKER_TIMEOUT,
            removal_policy=self._removal_policy,
        )
        fn.function.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=1,
                report_batch_item_failures=True,
                # The DRS call budget: the event source never runs more workers than this. Unlike a
                # reserved concurrency it takes nothing from the account's quota (see the module
                # docstring), and it does not throttle: jobs wait in the queue instead of being
                # received, throttled and counted toward the DLQ.
                max_concurrency=self.worker_concurrency,
            )
        )
        # Report items and marks, device and slot reads, re-authorisation and delivery inference.
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
                resources=[state.table_arn],
            )
        )
        self._data.grant_token_refresh(fn, lwa_client_secret_name)
        return fn

    # --- schedule ------------------------------------------------------------------------------------

    def _build_schedule(self) -> scheduler.Schedule:
        role = iam.Role(
            self,
            "ScheduleRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            ),
            description="Lets EventBridge Scheduler invoke the report planner, and nothing else",
        )
        return scheduler.Schedule(
            self,
            "Schedule",
            description="Hourly: plan the DRS reports of one of 24 device buckets",
            schedule=scheduler.ScheduleExpression.expression(self.schedule_expression),
            target=_InvokePlanner(
                self.planner.function,
                role=role,
                # The planner picks the bucket from the time the run was meant for, not when it ran.
                input=scheduler.ScheduleTargetInput.from_object(
                    {"scheduledTime": scheduler.ContextAttribute.scheduled_time}
                ),
                retry_attempts=SCHEDULE_RETRY_ATTEMPTS,
                max_event_age=SCHEDULE_MAX_EVENT_AGE,
                # A run Scheduler could not deliver (throttled, permission refused) is kept, not lost.
                dead_letter_queue=self.planner_dead_letter_queue,
            ),
        )

    # --- alarms --------------------------------------------------------------------------------------

    def _build_dlq_alarm(self) -> cloudwatch.Alarm:
        return self._first_message_alarm(
            "JobsDlqAlarm",
            "Report jobs failed every delivery: their devices were not reported",
            self.dead_letter_queue,
        )

    def _build_planner_dlq_alarm(self) -> cloudwatch.Alarm:
        return self._first_message_alarm(
            "PlannerDlqAlarm",
            "An hourly report plan was not delivered or failed all its retries: one device bucket went "
            "unplanned (the message says which scheduled time; invoke the planner with it)",
            self.planner_dead_letter_queue,
        )

    def _first_message_alarm(
        self, construct_id: str, description: str, queue: sqs.IQueue
    ) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _build_coverage_alarm(self) -> cloudwatch.Alarm:
        """Linked devices left without their daily ``deviceStatus`` over a completed UTC day.

        The planner counts ``ReportsDue``; the worker counts ``ReportsSent`` and ``ReportsSkipped`` (a due
        device that was unlinked or lost its authorisation before its turn). Both sides timestamp their
        counts with the plan's time, so a day's due devices and the reports sent for them fall in the
        same day whenever the work ran; a wall-clock window evaluates complete UTC days only.
        """

        def count(name: str, service: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={"service": service},
                statistic="Sum",
                period=Duration.days(1),
            )

        unreported = cloudwatch.MathExpression(
            expression="FILL(due, 0) - FILL(sent, 0) - FILL(skipped, 0)",
            using_metrics={
                "due": count("ReportsDue", "report_planner"),
                "sent": count("ReportsSent", "report_worker"),
                "skipped": count("ReportsSkipped", "report_worker"),
            },
            label="Linked devices not reported",
            period=Duration.days(1),
        )
        alarm = cloudwatch.Alarm(
            self,
            "CoverageAlarm",
            alarm_description="A UTC day ended with linked devices that got no DRS deviceStatus report",
            metric=unreported,
            threshold=0,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.node.default_child.add_property_override(  # type: ignore[union-attr]
            "EvaluationWindow", {"WallClockWindow": {"Timezone": "UTC"}}
        )
        return alarm


def worker_concurrency(scope: Construct) -> int:
    """Context ``reportWorkerConcurrency`` (default 10), within the SQS event source's range."""
    low, high = WORKER_CONCURRENCY_RANGE
    return whole_number(
        scope, "reportWorkerConcurrency", default=DEFAULT_WORKER_CONCURRENCY, low=low, high=high
    )
