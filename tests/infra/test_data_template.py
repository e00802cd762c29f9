"""Template assertions for the data construct: properties, not counts. Synthesized once per module."""

import aws_cdk as cdk
import pytest
from aws_cdk import Validations
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from drs_core import schema
from infra.app_factory import build_app


@pytest.fixture(scope="module")
def template() -> Template:
    app = build_app(context={"aws:cdk:bundling-stacks": []})
    stack = app.node.find_child("DrsReplenishment-dev")
    return Template.from_stack(stack)


def key_id(template: Template) -> str:
    (logical_id,) = template.find_resources("AWS::KMS::Key").keys()
    return logical_id


def test_key_rotates(template):
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_state_table_keys_stream_owner_index_pitr_and_cmk(template):
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [
                {"AttributeName": schema.STATE_PK, "KeyType": "HASH"},
                {"AttributeName": schema.STATE_SK, "KeyType": "RANGE"},
            ],
            "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
            "GlobalSecondaryIndexes": Match.array_with(
                [
                    Match.object_like(
                        {
                            "IndexName": schema.OWNER_INDEX,
                            "KeySchema": [
                                {"AttributeName": schema.OWNER_INDEX_PK, "KeyType": "HASH"},
                                {"AttributeName": schema.OWNER_INDEX_SK, "KeyType": "RANGE"},
                            ],
                        }
                    )
                ]
            ),
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {
                "SSEEnabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": {"Fn::GetAtt": [key_id(template), "Arn"]},
            },
        },
    )


def test_every_table_is_encrypted_with_the_key_and_recoverable(template):
    tables = template.find_resources("AWS::DynamoDB::Table")
    assert tables
    for table in tables.values():
        props = table["Properties"]
        assert props["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": [key_id(template), "Arn"]}
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_idempotency_table_expires_records(template):
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": schema.IDEMPOTENCY_PK, "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": schema.IDEMPOTENCY_TTL_ATTR, "Enabled": True},
        },
    )


def test_cdk_nag_is_enforced_at_synth():
    # Given an app with a queue that violates AwsSolutions (no TLS enforcement, no DLQ)
    app = cdk.App()
    stack = cdk.Stack(app, "Bad")
    sqs.Queue(stack, "Queue")
    Validations.of(app).add_plugins(AwsSolutionsChecks())
    # When it is synthesized, Then synthesis fails on the nag findings
    with pytest.raises(Exception, match="AwsSolutions-SQS"):
        app.synth()
