"""Template assertions for the ordering construct: the usage route, least-privilege roles, the filtered
stream mapping with its failure handling, the DLQ and its alarm. Synthesized once per module."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from drs_core import schema
from infra.app_factory import build_app
from infra.ordering import REORDER_MAX_RECORD_AGE, REORDER_RETRY_ATTEMPTS, USAGE_PATH


@pytest.fixture(scope="module")
def template() -> Template:
    app = build_app(context={"aws:cdk:bundling-stacks": []})
    return Template.from_stack(app.node.find_child("DrsReplenishment-dev"))


@pytest.fixture(scope="module")
def resources(template: Template) -> dict[str, Any]:
    return template.to_json()["Resources"]


def logical_id(resources: dict[str, Any], kind: str, **properties: Any) -> str:
    (found,) = [
        name
        for name, resource in resources.items()
        if resource["Type"] == kind and all(resource["Properties"].get(k) == v for k, v in properties.items())
    ]
    return found


def function_id(resources: dict[str, Any], folder: str) -> str:
    """The function whose code is ``functions/<folder>`` (its service name says so)."""
    (found,) = [
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Lambda::Function"
        and resource["Properties"]["Environment"]["Variables"].get("POWERTOOLS_SERVICE_NAME") == folder
    ]
    return found


def statements(resources: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """Every policy statement of the function's role."""
    role = resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for resource in resources.values()
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role} in resource["Properties"]["Roles"]
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions_on(resources: dict[str, Any], function: str, resource: Any) -> set[str]:
    granted: set[str] = set()
    for statement in statements(resources, function):
        if statement["Resource"] == resource:
            action = statement["Action"]
            granted |= {action} if isinstance(action, str) else set(action)
    return granted


def arn(resources: dict[str, Any], kind: str, prefix: str, attribute: str = "Arn") -> dict[str, Any]:
    (name,) = [n for n, r in resources.items() if r["Type"] == kind and n.startswith(prefix)]
    return {"Fn::GetAtt": [name, attribute]}


def test_the_usage_route_is_behind_the_device_authorizer(resources: dict[str, Any]) -> None:
    route = resources[logical_id(resources, "AWS::ApiGatewayV2::Route", RouteKey=f"POST {USAGE_PATH}")]
    authorizer = resources[route["Properties"]["AuthorizerId"]["Ref"]]
    assert route["Properties"]["AuthorizationType"] == "CUSTOM"
    assert authorizer["Properties"]["Name"] == "device"


def test_the_usage_function_only_writes_slots_and_its_idempotency_records(resources: dict[str, Any]) -> None:
    usage = function_id(resources, "usage_ingestion")
    state = arn(resources, "AWS::DynamoDB::Table", "DataState")
    idempotency = arn(resources, "AWS::DynamoDB::Table", "DataIdempotency")
    tokens = arn(resources, "AWS::DynamoDB::Table", "DataTokens")
    # No read of the state table on the hot path: UpdateItem only.
    assert actions_on(resources, usage, state) == {"dynamodb:UpdateItem"}
    assert actions_on(resources, usage, idempotency) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }
    assert actions_on(resources, usage, tokens) == set()
    assert not any("secretsmanager" in json.dumps(s["Action"]) for s in statements(resources, usage))
    variables = resources[usage]["Properties"]["Environment"]["Variables"]
    assert {"STATE_TABLE", "IDEMPOTENCY_TABLE"} <= set(variables) and "TOKENS_TABLE" not in variables


def test_the_reorder_function_has_exactly_what_ordering_needs(resources: dict[str, Any]) -> None:
    reorder = function_id(resources, "reorder_decision")
    state = arn(resources, "AWS::DynamoDB::Table", "DataState")
    tokens = arn(resources, "AWS::DynamoDB::Table", "DataTokens")
    stream = arn(resources, "AWS::DynamoDB::Table", "DataState", "StreamArn")
    key = arn(resources, "AWS::KMS::Key", "DataKey")
    assert actions_on(resources, reorder, state) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert actions_on(resources, reorder, tokens) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert actions_on(resources, reorder, stream) == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
    }
    assert {"kms:Encrypt", "kms:Decrypt"} <= actions_on(resources, reorder, key)
    secret_statements = [
        s for s in statements(resources, reorder) if s["Action"] == "secretsmanager:GetSecretValue"
    ]
    assert len(secret_statements) == 1
    assert json.dumps(secret_statements[0]["Resource"]).endswith(':secret:drs/lwa-client-secret-??????"]]}')
    # Wildcard resources: only ListStreams, which has no resource-level permissions.
    assert {s["Action"] for s in statements(resources, reorder) if s["Resource"] == "*"} == {
        "dynamodb:ListStreams"
    }


def test_the_stream_mapping_filters_to_due_and_refilled_slots_and_bounds_its_retries(
    resources: dict[str, Any],
) -> None:
    reorder = function_id(resources, "reorder_decision")
    (mapping,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["FunctionName"] == {"Ref": reorder}
    ]
    assert mapping["EventSourceArn"] == arn(resources, "AWS::DynamoDB::Table", "DataState", "StreamArn")
    # Slots due for an order, and slots a refill flagged for their prompt slotStatus: nothing else
    patterns = [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]]
    assert patterns == [schema.REORDER_FILTER_PATTERN, schema.SLOT_REPORT_FILTER_PATTERN]
    assert patterns[1]["dynamodb"]["NewImage"] == {"slotReportDue": {"BOOL": [True]}}
    # One due slot per invocation: a slow DRS answer can only time out its own record
    assert mapping["BatchSize"] == 1
    assert "BisectBatchOnFunctionError" not in mapping
    assert mapping["MaximumRetryAttempts"] == REORDER_RETRY_ATTEMPTS
    assert mapping["MaximumRecordAgeInSeconds"] == REORDER_MAX_RECORD_AGE.to_seconds()
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    dlq = mapping["DestinationConfig"]["OnFailure"]["Destination"]
    assert dlq == arn(resources, "AWS::SQS::Queue", "OrderingReorderDlq")


def test_the_dlq_is_encrypted_tls_only_and_alarmed(resources: dict[str, Any]) -> None:
    queue_id = arn(resources, "AWS::SQS::Queue", "OrderingReorderDlq")["Fn::GetAtt"][0]
    assert resources[queue_id]["Properties"]["SqsManagedSseEnabled"] is True
    (policy,) = [
        r["Properties"]["PolicyDocument"]
        for r in resources.values()
        if r["Type"] == "AWS::SQS::QueuePolicy" and {"Ref": queue_id} in r["Properties"]["Queues"]
    ]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Statement"]
    )
    (alarm,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}
        in r["Properties"].get("Dimensions", [])
    ]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
