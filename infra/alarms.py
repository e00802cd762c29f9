"""The alarm topic: every CloudWatch alarm of the stack notifies it; operators subscribe to it."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct


class AlarmTopic(Construct):
    """An SNS topic encrypted with the stack key, TLS only; ``action`` is what alarms add."""

    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self, "Topic", display_name="DRS replenishment alarms", master_key=key, enforce_ssl=True
        )
        # CloudWatch publishes alarm state changes to the encrypted topic: it needs the key for that,
        # and only for alarms of this account. The actions are the ones AWS documents for services
        # publishing to encrypted topics; "*" in a key policy is this key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
        # An explicit topic policy (``enforce_ssl`` writes one) replaces SNS's default policy, which is
        # what would otherwise let CloudWatch publish: without this statement no alarm notifies anyone.
        # Scoped to this account's alarms named for this stack (infra/monitoring.py names every alarm
        # "<stack>-<what>").
        stack = Stack.of(self)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": alarm_arn_pattern(self)},
                },
            )
        )
        self.action = cw_actions.SnsAction(self.topic)


def alarm_arn_pattern(scope: Construct) -> str:
    """The ARNs of the stack's alarms: every alarm is named ``<stack name>-<what>``."""
    stack = Stack.of(scope)
    return stack.format_arn(
        service="cloudwatch",
        resource="alarm",
        resource_name=f"{stack.stack_name}-*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
