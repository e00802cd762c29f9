"""DRS notifications: the SNS topic DRS publishes to → an SQS queue (with a DLQ and its alarm) → the
notification function, with partial batch responses.

DRS publishes from its own AWS account (``476877469412``, context ``drsAccountId``) to a topic in ours
(docs/drs.md §4): the topic policy lets that account, and ours for testing, publish. The topic and the
queues refuse plain HTTP; the queues are encrypted with the stack key.

The topic itself is **not** encrypted by default. A publisher from another account needs KMS permission
for a customer-managed key in its *own* account's IAM as well as in the key policy, and DRS's onboarding
asks the device maker for a topic policy only: an encrypted topic would refuse DRS's publishes, and no
notification would ever arrive. The message sits in the topic only while SNS delivers it to the
encrypted queue. Context ``encryptNotificationTopic=true`` encrypts it with the stack key (for accounts
that have confirmed DRS can use that key); the key policy then lets DRS's account use the key through
SNS for this topic only (encryption context ``aws:sns:topicArn``).

The subscription delivers the SNS envelope (raw delivery off): the function reads the ``version``
message attribute from it.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constants import DRS_NOTIFICATION_ACCOUNT
from infra.context import flag
from infra.data import Data
from infra.functions import ReplenishmentFunction, SharedLayers
from infra.nag import acknowledge

FUNCTION_TIMEOUT = Duration.seconds(30)
# AWS's guidance for an SQS event source: at least six times the function timeout, so a batch that is
# retried inside one poll is not handed to a second invocation meanwhile.
QUEUE_VISIBILITY_TIMEOUT = Duration.seconds(6 * 30)
MAX_RECEIVE_COUNT = 5
BATCH_SIZE = 10
RETENTION = Duration.days(4)
DLQ_RETENTION = Duration.days(14)


class Notifications(Construct):
    """``topic`` (its ARN goes into the DRS portal), ``queue``, ``dead_letter_queue``, ``function``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: Data,
        layers: SharedLayers,
        lwa_client_id: str,
        alarm_action: cloudwatch.IAlarmAction | None = None,
        drs_account_id: str | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
    ) -> None:
        super().__init__(scope, construct_id)
        self._data = data
        self._removal_policy = removal_policy
        self.drs_account_id = (
            drs_account_id or self.node.try_get_context("drsAccountId") or DRS_NOTIFICATION_ACCOUNT
        )
        # Context encryptNotificationTopic (default false): see the module docstring.
        self.encrypted_topic = flag(self, "encryptNotificationTopic")
        self.topic = self._build_topic()
        self.dead_letter_queue = self._build_dead_letter_queue()
        self.queue = self._build_queue()
        self.subscription = self._build_subscription()
        self.dlq_alarm = self._build_dlq_alarm(alarm_action)
        self.function = self._build_function(layers, lwa_client_id)

    def _build_topic(self) -> sns.Topic:
        stack = Stack.of(self)
        # A fixed name: the ARN pasted into the DRS portal survives a replacement of the topic, and the
        # key policy below can name the topic without a reference cycle (topic → key → topic).
        self.topic_name = f"{stack.stack_name}-drs-notifications"
        self.topic_arn = stack.format_arn(service="sns", resource=self.topic_name)
        topic = sns.Topic(
            self,
            "Topic",
            topic_name=self.topic_name,
            display_name="Amazon Dash Replenishment notifications",
            master_key=self._data.key if self.encrypted_topic else None,
            enforce_ssl=True,
        )
        if not self.encrypted_topic:
            acknowledge(
                topic,
                "AwsSolutions-SNS2",
                "DRS publishes from Amazon's account and would need KMS permission in its own account for a "
                "customer-managed key, which DRS's onboarding does not grant: an encrypted topic would lose "
                "every notification. Messages rest only in the KMS-encrypted queue behind it; context "
                "encryptNotificationTopic=true encrypts the topic where DRS is confirmed to use the key.",
            )
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DrsPublishes",
                principals=[
                    # DRS exists in the aws partition only: the literal ARN is what the DRS docs show.
                    iam.ArnPrincipal(f"arn:aws:iam::{self.drs_account_id}:root"),
                    iam.AccountRootPrincipal(),
                ],
                actions=["SNS:Publish"],
                resources=[topic.topic_arn],
            )
        )
        if self.encrypted_topic:
            # Publishing to an encrypted topic needs the key: DRS's account may use it through SNS only,
            # and only for this topic (SNS puts the topic's ARN in the encryption context). AWS's
            # documented publisher actions; "*" in a key policy is this key.
            self._data.key.add_to_resource_policy(
                iam.PolicyStatement(
                    principals=[iam.ArnPrincipal(f"arn:aws:iam::{self.drs_account_id}:root")],
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"sns.{stack.region}.amazonaws.com",
                            "kms:EncryptionContext:aws:sns:topicArn": self.topic_arn,
                        }
                    },
                )
            )
        return topic

    def _build_dead_letter_queue(self) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self._data.key,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
            removal_policy=self._removal_policy,
        )
        acknowledge(
            queue,
            "AwsSolutions-SQS3",
            "This is the dead-letter queue of the notification queue; it has no DLQ of its own.",
        )
        return queue

    def _build_queue(self) -> sqs.Queue:
        return sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self._data.key,
            enforce_ssl=True,
            visibility_timeout=QUEUE_VISIBILITY_TIMEOUT,
            retention_period=RETENTION,
            removal_policy=self._removal_policy,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )

    def _build_subscription(self) -> sns.Subscription:
        """Topic → queue, the SNS envelope delivered as is (raw delivery off); the queue takes messages
        from this topic only, and SNS may use the key only on this topic's behalf."""
        self.queue.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("sns.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
                conditions={"ArnEquals": {"aws:SourceArn": self.topic.topic_arn}},
            )
        )
        self._data.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("sns.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"ArnEquals": {"aws:SourceArn": self.topic_arn}},
            )
        )
        subscription = sns.Subscription(
            self,
            "QueueSubscription",
            topic=self.topic,
            endpoint=self.queue.queue_arn,
            protocol=sns.SubscriptionProtocol.SQS,
            raw_message_delivery=False,
        )
        # SNS delivers only once the queue lets it: create the policy first.
        policy = self.queue.node.try_find_child("Policy")
        if policy is not None:
            subscription.node.add_dependency(policy)
        return subscription

    def _build_dlq_alarm(self, alarm_action: cloudwatch.IAlarmAction | None) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            "DeadLetterAlarm",
            alarm_description=(
                "DRS notifications failed repeatedly and wait in the dead-letter queue: inspect, fix, "
                "then redrive them to the notification queue."
            ),
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if alarm_action is not None:
            alarm.add_alarm_action(alarm_action)
        return alarm

    def _build_function(self, layers: SharedLayers, lwa_client_id: str) -> ReplenishmentFunction:
        data = self._data
        function = ReplenishmentFunction(
            self,
            "Function",
            name="notifications",
            description="Applies DRS order, subscription and device-lifecycle notifications",
            layers=layers,
            removal_policy=self._removal_policy,
            timeout=FUNCTION_TIMEOUT,
            # The token vault is built from these; this function only ever deletes tokens.
            environment={
                **data.token_environment(lwa_client_id),
                "IDEMPOTENCY_TABLE": data.idempotency_table.table_name,
            },
        )
        role = function.role
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
                resources=[data.state_table.table_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["dynamodb:DeleteItem"], resources=[data.tokens_table.table_arn])
        )
        data.grant_idempotency(role)
        # Reading the tables and the queue's messages, all encrypted with the stack key.
        role.add_to_policy(iam.PolicyStatement(actions=["kms:Decrypt"], resources=[data.key.key_arn]))
        function.function.add_event_source(
            event_sources.SqsEventSource(self.queue, batch_size=BATCH_SIZE, report_batch_item_failures=True)
        )
        return function
