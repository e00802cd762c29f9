"""Usage ingestion and reorder decisions (docs/architecture.md §1 flows 2-3).

- ``POST /v1/devices/{serial}/usage`` (device authorizer) → the usage function: one conditional
  ``UpdateItem`` per slot reading on the state table, Powertools idempotency on its own table.
- The state table's stream → the reorder function, through event source **filters**
  (``schema.REORDER_FUNCTION_FILTER_PATTERNS``: slot items whose new image has ``reorderDue = true``, or
  ``slotReportDue = true`` after a refill, which gets its prompt ``slotStatus``), so readings that need
  no order and no report invoke nothing. One record per batch, partial batch responses, bounded
  retries and record age; what still fails goes to the on-failure destination, an SQS DLQ with an
  alarm. A record that ends there has given its slot's claim back already (the function releases it on
  every failure), and the slot's next reading below the reorder point raises the flag again.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from drs_core import schema
from infra.api import Api
from infra.data import Data
from infra.functions import ReplenishmentFunction, SharedLayers
from infra.nag import acknowledge
from infra.queues import failure_destination_queue

USAGE_PATH = "/v1/devices/{serial}/usage"
# Two DRS calls (one token refresh between them) within the HTTP client's 20 s bound each, and margin.
REORDER_TIMEOUT = Duration.seconds(90)
# One due slot per invocation: a record can take two DRS calls and a token refresh, each up to its retry
# budget, so a batch of several could outlast the timeout on one slow DRS answer and fail (and retry)
# every record in it. Due records are rare (the filter passes nothing else), so throughput is no concern.
REORDER_BATCH_SIZE = 1
# Retries of a failing record before its records go to the DLQ; a due record older than this
# is dropped to the DLQ too: the slot's next low reading raises a fresh one.
REORDER_RETRY_ATTEMPTS = 4
REORDER_MAX_RECORD_AGE = Duration.hours(6)


class Ordering(Construct):
    """The usage route and function, the reorder function on the filtered stream, its DLQ and alarm."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: Data,
        layers: SharedLayers,
        api: Api,
        lwa_client_id: str,
        lwa_client_secret_name: str,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
    ) -> None:
        super().__init__(scope, construct_id)
        self._data = data
        self._layers = layers
        self._removal_policy = removal_policy
        self.usage = self._build_usage_function()
        api.add_device_route("POST", USAGE_PATH, self.usage.function)
        self.dead_letter_queue = self._build_dead_letter_queue()
        self.reorder = self._build_reorder_function(lwa_client_id, lwa_client_secret_name)
        self.dlq_alarm = self._build_dlq_alarm()

    def _build_usage_function(self) -> ReplenishmentFunction:
        state, idempotency, key = self._data.state_table, self._data.idempotency_table, self._data.key
        fn = ReplenishmentFunction(
            self,
            "UsageFn",
            name="usage_ingestion",
            description="Applies device usage readings: one conditional write per slot reading, no read",
            layers=self._layers,
            environment={"STATE_TABLE": state.table_name, "IDEMPOTENCY_TABLE": idempotency.table_name},
            removal_policy=self._removal_policy,
        )
        # Every slot write of the hot path (and its exact fallback) is a conditional UpdateItem.
        fn.role.add_to_policy(
            iam.PolicyStatement(actions=["dynamodb:UpdateItem"], resources=[state.table_arn])
        )
        self._data.grant_idempotency(fn.role)
        # Both tables are encrypted with the data key.
        fn.role.add_to_policy(
            iam.PolicyStatement(actions=["kms:Encrypt", "kms:Decrypt"], resources=[key.key_arn])
        )
        return fn

    def _build_dead_letter_queue(self) -> sqs.Queue:
        # What Lambda sends here is a record's position in the stream (shard, sequence numbers).
        return failure_destination_queue(
            self,
            "ReorderDlq",
            senders="the reorder function's stream mapping sends the records it gave up on here "
            "(on-failure destination)",
            removal_policy=self._removal_policy,
        )

    def _build_reorder_function(
        self, lwa_client_id: str, lwa_client_secret_name: str
    ) -> ReplenishmentFunction:
        state = self._data.state_table
        fn = ReplenishmentFunction(
            self,
            "ReorderFn",
            name="reorder_decision",
            description="Claims a slot flagged reorderDue and places its DRS order exactly once",
            layers=self._layers,
            environment=self._data.token_environment(lwa_client_id, lwa_client_secret_name),
            timeout=REORDER_TIMEOUT,
            removal_policy=self._removal_policy,
        )
        fn.function.add_event_source(
            event_sources.DynamoEventSource(
                state,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=REORDER_BATCH_SIZE,
                retry_attempts=REORDER_RETRY_ATTEMPTS,
                max_record_age=REORDER_MAX_RECORD_AGE,
                report_batch_item_failures=True,
                on_failure=event_sources.SqsDlq(self.dead_letter_queue),
                filters=[
                    lambda_.FilterCriteria.filter(pattern)
                    for pattern in schema.REORDER_FUNCTION_FILTER_PATTERNS
                ],
            )
        )
        acknowledge(
            fn.role,
            "AwsSolutions-IAM5[Resource::*]",
            "dynamodb:ListStreams, granted with the stream mapping, supports no resource-level permission; "
            "the stream reads themselves are limited to the state table's stream.",
        )
        # Slot and device reads, the claim and every order-state write, the order's history item.
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"], resources=[state.table_arn]
            )
        )
        self._data.grant_token_refresh(fn, lwa_client_secret_name)
        return fn

    def _build_dlq_alarm(self) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            "ReorderDlqAlarm",
            alarm_description="A due slot's reorder decision failed through all retries (DRS or LWA down?)",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
