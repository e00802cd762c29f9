"""Template assertions for the notifications construct: who may publish, encryption and TLS, the DLQ and
its alarm, the event source's partial batch responses, the function's exact permissions.
Synthesized once per module."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra.app_factory import build_app
from infra.constants import DRS_NOTIFICATION_ACCOUNT

STACK_ID = "DrsReplenishment-dev"


@pytest.fixture(scope="module")
def template() -> Template:
    app = build_app(context={"aws:cdk:bundling-stacks": []})
    return Template.from_stack(app.node.find_child(STACK_ID))


def only(template: Template, kind: str, props: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    found = template.find_resources(kind, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected exactly one {kind} matching {props}, found {list(found)}"
    return next(iter(found.items()))


def logical_id(template: Template, kind: str, prefix: str) -> str:
    (found,) = [name for name in template.find_resources(kind) if name.startswith(prefix)]
    return found


def key_arn(template: Template) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id(template, "AWS::KMS::Key", "Data"), "Arn"]}


def topic_ref(template: Template) -> dict[str, str]:
    return {"Ref": logical_id(template, "AWS::SNS::Topic", "NotificationsTopic")}


def queue_id(template: Template) -> str:
    return logical_id(template, "AWS::SQS::Queue", "NotificationsQueue")


def dlq_id(template: Template) -> str:
    return logical_id(template, "AWS::SQS::Queue", "NotificationsDeadLetterQueue")


def function_id(template: Template) -> str:
    return logical_id(template, "AWS::Lambda::Function", "NotificationsFunction")


@pytest.fixture(scope="module")
def encrypted_template() -> Template:
    """The stack as deployed with ``-c encryptNotificationTopic=true``."""
    app = build_app(context={"aws:cdk:bundling-stacks": [], "encryptNotificationTopic": "true"})
    return Template.from_stack(app.node.find_child(STACK_ID))


def drs_key_statements(template: Template) -> list[dict[str, Any]]:
    _, key = only(template, "AWS::KMS::Key")
    return [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal", {}).get("AWS") == f"arn:aws:iam::{DRS_NOTIFICATION_ACCOUNT}:root"
    ]


def test_topic_is_unencrypted_by_default_and_output_for_the_drs_portal(template):
    # Given the synthesized stack, Then the DRS topic has no KMS key: a cross-account publisher needs KMS
    # permission in its own account too, which DRS's onboarding does not give
    _, topic = only(template, "AWS::SNS::Topic", {"TopicName": Match.string_like_regexp("drs-notifications")})
    assert "KmsMasterKeyId" not in topic["Properties"]
    # And the key policy grants DRS's account nothing
    assert drs_key_statements(template) == []
    # And the queue behind it stays encrypted with the stack key
    assert template.to_json()["Resources"][queue_id(template)]["Properties"]["KmsMasterKeyId"] == key_arn(
        template
    )
    outputs = template.find_outputs("NotificationTopicArn")
    assert outputs["NotificationTopicArn"]["Value"] == topic_ref(template)


def test_topic_policy_lets_the_drs_account_and_ours_publish_over_tls_only(template):
    # Given the notification topic's policy
    _, policy = only(template, "AWS::SNS::TopicPolicy", {"Topics": [topic_ref(template)]})
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    # Then DRS's account (and ours, for tests) may publish, and nothing else
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Action"] == "SNS:Publish"
    assert allow["Resource"] == topic_ref(template)
    principals = allow["Principal"]["AWS"]
    assert f"arn:aws:iam::{DRS_NOTIFICATION_ACCOUNT}:root" in principals
    assert len(principals) == 2
    # And plain-HTTP publishing is denied
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_encrypted_on_request_and_drs_may_use_the_key_only_through_sns_for_this_topic(encrypted_template):
    template = encrypted_template
    # Given -c encryptNotificationTopic=true, Then the topic uses the stack key
    _, topic = only(template, "AWS::SNS::Topic", {"TopicName": Match.string_like_regexp("drs-notifications")})
    assert topic["Properties"]["KmsMasterKeyId"] == key_arn(template)
    # And the DRS account's key statement allows data keys for publishing, via SNS only, bound to this
    # topic by the encryption context SNS sets
    (drs,) = drs_key_statements(template)
    assert sorted(drs["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    condition = drs["Condition"]["StringEquals"]
    via_sns = {"Fn::Join": ["", ["sns.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
    assert condition["kms:ViaService"] == via_sns
    topic_arn = json.dumps(condition["kms:EncryptionContext:aws:sns:topicArn"])
    assert topic_arn.endswith(':DrsReplenishment-dev-drs-notifications"]]}'), topic_arn
    # And SNS may use it for this topic's deliveries only
    _, key = only(template, "AWS::KMS::Key")
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    (sns,) = [s for s in statements if s.get("Principal", {}).get("Service") == "sns.amazonaws.com"]
    assert "aws:SourceArn" in sns["Condition"]["ArnEquals"]


def test_a_bad_encryption_switch_fails_synth():
    with pytest.raises(ValueError, match="encryptNotificationTopic"):
        build_app(context={"aws:cdk:bundling-stacks": [], "encryptNotificationTopic": "yes"}, nag=False)


def test_queues_are_encrypted_and_refuse_plain_http(template):
    # Given both notification queues
    for queue in (queue_id(template), dlq_id(template)):
        props = template.to_json()["Resources"][queue]["Properties"]
        # Then each is encrypted with the stack key
        assert props["KmsMasterKeyId"] == key_arn(template)
        # And its policy denies requests without TLS
        _, policy = only(template, "AWS::SQS::QueuePolicy", {"Queues": [{"Ref": queue}]})
        assert {
            "Action": "sqs:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Resource": {"Fn::GetAtt": [queue, "Arn"]},
        } in policy["Properties"]["PolicyDocument"]["Statement"]


def test_queue_accepts_messages_only_from_the_topic_and_gets_the_envelope(template):
    # Given the queue's policy and the subscription
    _, policy = only(template, "AWS::SQS::QueuePolicy", {"Queues": [{"Ref": queue_id(template)}]})
    (allow,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    # Then only SNS, on behalf of the notification topic, may send
    assert allow["Principal"] == {"Service": "sns.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": topic_ref(template)}}
    # And the subscription keeps the SNS envelope (the handler reads the version attribute from it)
    template.has_resource_properties(
        "AWS::SNS::Subscription",
        {
            "Protocol": "sqs",
            "TopicArn": topic_ref(template),
            "Endpoint": {"Fn::GetAtt": [queue_id(template), "Arn"]},
            "RawMessageDelivery": False,
        },
    )


def test_failed_messages_go_to_the_dlq_after_bounded_retries(template):
    # Given the notification queue, Then its redrive policy names the DLQ with a bounded receive count
    props = template.to_json()["Resources"][queue_id(template)]["Properties"]
    assert props["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id(template), "Arn"]}
    assert 1 < props["RedrivePolicy"]["maxReceiveCount"] <= 10


def test_visibility_timeout_is_at_least_six_function_timeouts(template):
    # Given the queue and the function, Then the visibility timeout covers six function timeouts
    resources = template.to_json()["Resources"]
    visibility = resources[queue_id(template)]["Properties"]["VisibilityTimeout"]
    timeout = resources[function_id(template)]["Properties"]["Timeout"]
    assert visibility >= 6 * timeout


def test_event_source_reports_batch_item_failures(template):
    # Given the function's SQS event source mapping
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [queue_id(template), "Arn"]},
            "FunctionName": {"Ref": function_id(template)},
            "BatchSize": 10,
            # Then one failed record does not fail the batch
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )


def test_dlq_depth_alarm_notifies_the_alarm_topic(template):
    # Given the alarms, Then one fires as soon as a message waits in the DLQ and notifies the alarm topic
    alarm_topic = logical_id(template, "AWS::SNS::Topic", "Alarms")
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id(template), "QueueName"]}}],
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0,
            "AlarmActions": [{"Ref": alarm_topic}],
        },
    )
    template.has_resource_properties(
        "AWS::SNS::Topic",
        {"DisplayName": Match.string_like_regexp("alarms"), "KmsMasterKeyId": key_arn(template)},
    )


def test_function_has_exactly_the_permissions_it_uses(template):
    # Given the function's role policy
    role = template.to_json()["Resources"][function_id(template)]["Properties"]["Role"]["Fn::GetAtt"][0]
    _, policy = only(template, "AWS::IAM::Policy", {"Roles": [{"Ref": role}]})
    granted = {
        (tuple(sorted(s["Action"])) if isinstance(s["Action"], list) else (s["Action"],)): s["Resource"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    }
    table = logical_id(template, "AWS::DynamoDB::Table", "DataState")
    tokens = logical_id(template, "AWS::DynamoDB::Table", "DataTokens")
    idempotency = logical_id(template, "AWS::DynamoDB::Table", "DataIdempotency")
    # Then: read, query (a deregistration ends the link on every slot) and conditionally update state;
    # delete tokens (never read them); the idempotency
    # records; decrypt with the key; consume the queue; and its own logs
    assert granted[("dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem")] == {
        "Fn::GetAtt": [table, "Arn"]
    }
    assert granted[("dynamodb:DeleteItem",)] == {"Fn::GetAtt": [tokens, "Arn"]}
    assert granted[
        ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
    ] == {"Fn::GetAtt": [idempotency, "Arn"]}
    assert granted[("kms:Decrypt",)] == key_arn(template)
    assert granted[
        (
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
            "sqs:ReceiveMessage",
        )
    ] == {"Fn::GetAtt": [queue_id(template), "Arn"]}
    assert set(granted) == {
        ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"),
        ("dynamodb:DeleteItem",),
        ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
        ("kms:Decrypt",),
        (
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
            "sqs:ReceiveMessage",
        ),
        ("logs:CreateLogStream", "logs:PutLogEvents"),
    }


def test_function_environment_names_its_tables(template):
    # Given the function, Then its environment names the three tables it uses
    env = template.to_json()["Resources"][function_id(template)]["Properties"]["Environment"]["Variables"]
    assert {"STATE_TABLE", "TOKENS_TABLE", "IDEMPOTENCY_TABLE"} <= set(env)
