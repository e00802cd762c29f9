"""Reporting (docs/architecture.md §1 flow 5): EventBridge Scheduler → report planner → SQS report jobs (+DLQ)
→ report worker with bounded concurrency → DRS ``deviceStatus`` / ``slotStatus``.

Context: ``reportScheduleExpression`` (default ``rate(1 hour)``: one of 24 buckets per run) and
``reportWorkerConcurrency`` (default 10: the worker's reserved concurrency, i.e. the DRS call budget —
10 workers making ~5 calls/s each keep 1 M devices' daily reports to about a third of each hour).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from drs_core import schema
from infra.data import Data
from infra.functions import ReplenishmentFunction, SharedLayers

DEFAULT_SCHEDULE = "rate(1 hour)"
DEFAULT_WORKER_CONCURRENCY = 10
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
        self.worker_concurrency = int(
            self.node.try_get_context("reportWorkerConcurrency") or DEFAULT_WORKER_CONCURRENCY
        )
        self.dead_letter_queue = self._build_dead_letter_queue()
        self.queue = self._build_queue()
        self.planner = self._build_planner()
        self.worker = self._build_worker(lwa_client_id, lwa_client_secret_name)
        self.schedule = self._build_schedule()
        self.dlq_alarm = self._build_dlq_alarm()
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
            reserved_concurrency=self.worker_concurrency,
            removal_policy=self._removal_policy,
        )
        fn.function.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=1,
                report_batch_item_failures=True,
                # Pollers never outnumber the reserved concurrency: throttled deliveries would count as
                # receives and push healthy jobs toward the DLQ. (SQS event sources need at least 2.)
                max_concurrency=max(2, self.worker_concurrency),
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
                retry_attempts=3,
                max_event_age=Duration.minutes(30),
            ),
        )

    # --- alarms --------------------------------------------------------------------------------------

    def _build_dlq_alarm(self) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            "JobsDlqAlarm",
            alarm_description="Report jobs failed every delivery: their devices were not reported",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
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
