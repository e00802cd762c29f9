"""The embedded system: no drift from the template, the gateway, the pumps and the schedules.

(1) deploys the real app's synthesized template into moto and compares what moto holds with the
template. (2) to (5) run a small template fragment built here, with fake functions written to a temporary
folder, so they test the sandbox's machinery whatever the product's functions do.
"""

from __future__ import annotations

import base64
import json
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from aws_lambda_powertools.utilities.parser.models import (
    ApiGatewayAuthorizerRequestV2,
    APIGatewayProxyEventV2Model,
    DynamoDBStreamLambdaOnFailureDestinationModel,
    DynamoDBStreamModel,
    SqsModel,
)

from sandbox.aws import Resolver, Resources
from sandbox.pumps import Occurrences, StreamPump
from sandbox.system import EmbeddedSystem, SnsPublisher
from sandbox.template import SandboxTemplate, load_sandbox_template, parse_template

# ------------------------------------------------------------------------------------------ the fragment

DUE_PATTERN = {"dynamodb": {"NewImage": {"due": {"BOOL": [True]}}}}
AUTH_TTL = 300

HANDLERS = {
    "echo": """
        import json, os
        CALLS = []
        def handler(event, context):
            CALLS.append(event)
            if event["rawPath"] == "/boom":
                raise RuntimeError("boom")
            return {
                "statusCode": 200,
                "headers": {"content-type": "application/json", "x-mode": os.environ["MODE"]},
                "cookies": ["seen=1"],
                "body": json.dumps({"function": context.function_name}),
            }
    """,
    "authz": """
        CALLS = []
        def handler(event, context):
            CALLS.append(event)
            allowed = event["identitySource"][0] == "Bearer good"
            return {"isAuthorized": allowed, "context": {"userId": "user-1"}}
    """,
    "consumer": """
        import json, os
        CALLS = []
        def handler(event, context):
            failures = []
            for record in event["Records"]:
                message = json.loads(record["body"])["Message"]
                CALLS.append((message, record, os.environ["MODE"]))
                if message.startswith("fail"):
                    failures.append({"itemIdentifier": record["messageId"]})
            return {"batchItemFailures": failures}
    """,
    "reorder": """
        import os
        TABLE_AT_IMPORT = os.environ.get("TABLE")
        CALLS, EVENTS = [], []
        def handler(event, context):
            EVENTS.append(event)
            CALLS.append([r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]])
            if any(r["dynamodb"]["NewImage"].get("poison") for r in event["Records"]):
                raise RuntimeError("poison record")
    """,
    "planner": """
        from drs_core.clock import default_clock, to_iso
        CALLS = []
        def handler(event, context):
            CALLS.append((event, to_iso(default_clock().now())))
    """,
}


def _function(name: str, **env: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Handler": "handler.handler",
            "Runtime": "python3.12",
            "Role": {"Fn::GetAtt": ["Role", "Arn"]},
            "Code": {"ZipFile": "def handler(event, context):\n    return None\n"},
            "Timeout": 10,
            "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": name, **env}},
        },
    }


def _route(key: str, authorizer: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {
        "ApiId": {"Ref": "Api"},
        "RouteKey": key,
        "AuthorizationType": "CUSTOM" if authorizer else "NONE",
        "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "EchoIntegration"}]]},
    }
    if authorizer:
        props["AuthorizerId"] = {"Ref": authorizer}
    return {"Type": "AWS::ApiGatewayV2::Route", "Properties": props}


def _schedule(expression: str, target: str) -> dict[str, Any]:
    return {
        "Type": "AWS::Scheduler::Schedule",
        "Properties": {
            "ScheduleExpression": expression,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": {"Fn::GetAtt": [target, "Arn"]},
                "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
                "Input": '{"at":"<aws.scheduler.scheduled-time>"}',
            },
        },
    }


def fragment_template() -> dict[str, Any]:
    """A template with one of everything the sandbox plays."""
    assume = {"Service": "lambda.amazonaws.com"}
    return {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Principal": assume, "Action": "sts:AssumeRole"}],
                    }
                },
            },
            "Key": {
                "Type": "AWS::KMS::Key",
                "Properties": {
                    "KeyPolicy": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"AWS": {"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:root"}},
                                "Action": "kms:*",
                                "Resource": "*",
                            }
                        ],
                    }
                },
            },
            "Table": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "AttributeDefinitions": [
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "owner", "AttributeType": "S"},
                    ],
                    "GlobalSecondaryIndexes": [
                        {
                            "IndexName": "byOwner",
                            "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}],
                            "Projection": {"ProjectionType": "KEYS_ONLY"},
                        }
                    ],
                    "BillingMode": "PAY_PER_REQUEST",
                    "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
                    "TimeToLiveSpecification": {"AttributeName": "expires", "Enabled": True},
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                },
            },
            "Dlq": {"Type": "AWS::SQS::Queue", "Properties": {"MessageRetentionPeriod": 1209600}},
            "Queue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "VisibilityTimeout": 45,
                    "KmsMasterKeyId": {"Fn::GetAtt": ["Key", "Arn"]},
                    "RedrivePolicy": {
                        "deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]},
                        "maxReceiveCount": 2,
                    },
                },
            },
            "StreamDlq": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "Jobs": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {}},
            "Subscription": {
                "Type": "AWS::SNS::Subscription",
                "Properties": {
                    "Protocol": "sqs",
                    "TopicArn": {"Ref": "Topic"},
                    "Endpoint": {"Fn::GetAtt": ["Queue", "Arn"]},
                    "RawMessageDelivery": False,
                },
            },
            "Echo": _function("echo", MODE="api"),
            "Authz": _function("authz"),
            "Consumer": _function("consumer", MODE="consumer", QUEUE_URL={"Ref": "Queue"}),
            "Reorder": _function("reorder", TABLE={"Ref": "Table"}),
            "Planner": _function("planner", TABLE={"Ref": "Table"}),
            "ConsumerMapping": {
                "Type": "AWS::Lambda::EventSourceMapping",
                "Properties": {
                    "FunctionName": {"Ref": "Consumer"},
                    "EventSourceArn": {"Fn::GetAtt": ["Queue", "Arn"]},
                    "BatchSize": 10,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                },
            },
            "ReorderMapping": {
                "Type": "AWS::Lambda::EventSourceMapping",
                "Properties": {
                    "FunctionName": {"Ref": "Reorder"},
                    "EventSourceArn": {"Fn::GetAtt": ["Table", "StreamArn"]},
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 10,
                    "BisectBatchOnFunctionError": True,
                    "MaximumRetryAttempts": 1,
                    "FilterCriteria": {"Filters": [{"Pattern": json.dumps(DUE_PATTERN)}]},
                    "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["StreamDlq", "Arn"]}}},
                },
            },
            "Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {"Name": "api", "ProtocolType": "HTTP"}},
            "Authorizer": {
                "Type": "AWS::ApiGatewayV2::Authorizer",
                "Properties": {
                    "ApiId": {"Ref": "Api"},
                    "AuthorizerType": "REQUEST",
                    "AuthorizerPayloadFormatVersion": "2.0",
                    "AuthorizerResultTtlInSeconds": AUTH_TTL,
                    "EnableSimpleResponses": True,
                    "IdentitySource": ["$request.header.Authorization"],
                    "Name": "fake",
                    "AuthorizerUri": {
                        "Fn::Join": [
                            "",
                            [
                                "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/",
                                {"Fn::GetAtt": ["Authz", "Arn"]},
                                "/invocations",
                            ],
                        ]
                    },
                },
            },
            "EchoIntegration": {
                "Type": "AWS::ApiGatewayV2::Integration",
                "Properties": {
                    "ApiId": {"Ref": "Api"},
                    "IntegrationType": "AWS_PROXY",
                    "IntegrationUri": {"Fn::GetAtt": ["Echo", "Arn"]},
                    "PayloadFormatVersion": "2.0",
                },
            },
            "EchoGet": _route("GET /v1/devices/{serial}/echo", "Authorizer"),
            "EchoPost": _route("POST /v1/devices/{serial}/echo", "Authorizer"),
            "Public": _route("GET /public/{proxy+}"),
            "Boom": _route("GET /boom"),
            "Hourly": _schedule("rate(1 hour)", "Planner"),
            "Daily": _schedule("cron(30 2 * * ? *)", "Jobs"),
        }
    }


@pytest.fixture(scope="module")
def handlers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("functions")
    for name, source in HANDLERS.items():
        (root / name).mkdir()
        (root / name / "handler.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture(scope="module")
def system(handlers_dir: Path) -> Iterator[EmbeddedSystem]:
    with EmbeddedSystem(
        template=fragment_template(),
        functions_dir=handlers_dir,
        gateway_port=0,
        simulator_port=0,
        stack_name="SandboxFragment",
    ) as started:
        yield started


def calls(system: EmbeddedSystem, function: str) -> list[Any]:
    return system.runner.module(function).CALLS  # type: ignore[union-attr, no-any-return]


# ------------------------------------------------------------------------------------------ (1) no drift


@pytest.fixture(scope="module")
def app_template() -> SandboxTemplate:
    """The real app's template (synthesized once, or read from .sandbox-cache/)."""
    return load_sandbox_template()


def _key_schema(items: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(item["AttributeName"], item["KeyType"]) for item in items]


def _projection(projection: dict[str, Any]) -> tuple[str, list[str]]:
    return projection["ProjectionType"], sorted(projection.get("NonKeyAttributes", []))


def drift(template: SandboxTemplate, resources: Resources) -> list[str]:
    """Every difference between the template's tables/queues/topics/subscriptions and moto's."""
    found: list[str] = []
    resolver = Resolver(resources, template)
    dynamodb, sqs, sns = resources.client("dynamodb"), resources.client("sqs"), resources.client("sns")
    for lid, res in template.of_type("AWS::DynamoDB::Table").items():
        props = res["Properties"]
        table = dynamodb.describe_table(TableName=resources.tables[lid].name)["Table"]
        expected_gsis = {
            g["IndexName"]: (_key_schema(g["KeySchema"]), _projection(g["Projection"]))
            for g in props.get("GlobalSecondaryIndexes", [])
        }
        actual_gsis = {
            g["IndexName"]: (_key_schema(g["KeySchema"]), _projection(g["Projection"]))
            for g in table.get("GlobalSecondaryIndexes", [])
        }
        ttl = dynamodb.describe_time_to_live(TableName=table["TableName"])["TimeToLiveDescription"]
        pitr = dynamodb.describe_continuous_backups(TableName=table["TableName"])[
            "ContinuousBackupsDescription"
        ]
        checks = {
            "keys": (_key_schema(props["KeySchema"]), _key_schema(table["KeySchema"])),
            "attributes": (
                sorted((a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]),
                sorted((a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]),
            ),
            "indexes": (expected_gsis, actual_gsis),
            "stream": (
                props.get("StreamSpecification", {}).get("StreamViewType"),
                table.get("StreamSpecification", {}).get("StreamViewType"),
            ),
            "billing": (props.get("BillingMode"), table.get("BillingModeSummary", {}).get("BillingMode")),
            "ttl": (
                props.get("TimeToLiveSpecification", {}).get("AttributeName"),
                ttl.get("AttributeName") if ttl["TimeToLiveStatus"] == "ENABLED" else None,
            ),
            "pitr": (
                bool(props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")),
                pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED",
            ),
        }
        found += [
            f"table {lid} {name}: {want} != {got}" for name, (want, got) in checks.items() if want != got
        ]
    for lid, res in template.of_type("AWS::SQS::Queue").items():
        props = resolver.resolve(res.get("Properties", {}))
        queue = resources.queues[lid]
        attrs = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])["Attributes"]
        redrive = props.get("RedrivePolicy")
        checks = {
            "visibility": (str(props.get("VisibilityTimeout", 30)), attrs["VisibilityTimeout"]),
            "retention": (str(props.get("MessageRetentionPeriod", 345600)), attrs["MessageRetentionPeriod"]),
            "delay": (str(props.get("DelaySeconds", 0)), attrs["DelaySeconds"]),
            "key": (props.get("KmsMasterKeyId"), attrs.get("KmsMasterKeyId")),
            "redrive": (redrive, json.loads(attrs["RedrivePolicy"]) if "RedrivePolicy" in attrs else None),
        }
        found += [
            f"queue {lid} {name}: {want} != {got}" for name, (want, got) in checks.items() if want != got
        ]
    topics = {topic["TopicArn"] for topic in sns.list_topics()["Topics"]}
    for lid in template.of_type("AWS::SNS::Topic"):
        if resources.topics[lid] not in topics:
            found.append(f"topic {lid} missing")
    for sub in template.subscriptions:
        topic_arn = resources.topics[sub.topic]  # type: ignore[index]
        actual = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
        wanted = (sub.protocol, resolver.resolve(sub.endpoint))
        matching = [s for s in actual if (s["Protocol"], s["Endpoint"]) == wanted]
        if not matching:
            found.append(f"subscription {sub.logical_id} {wanted} missing from {actual}")
            continue
        attributes = sns.get_subscription_attributes(SubscriptionArn=matching[0]["SubscriptionArn"])
        raw = str(sub.attributes.get("RawMessageDelivery", False)).lower()
        if attributes["Attributes"].get("RawMessageDelivery", "false") != raw:
            found.append(f"subscription {sub.logical_id} RawMessageDelivery is not {raw}")
    return found


def test_the_real_app_runs_in_the_sandbox_as_its_template_says(app_template: SandboxTemplate) -> None:
    # Given the synthesized CDK app
    assert app_template.of_type("AWS::DynamoDB::Table"), "the app has tables"
    # When the embedded system deploys it and loads its functions
    with EmbeddedSystem(template=app_template, gateway_port=0, simulator_port=0) as real:
        differences = drift(app_template, real.resources)
        listed = requests.get(f"{real.gateway_url}/__sandbox/resources", timeout=5).json()
        loaded = {name: real.runner.module(name) is not None for name in app_template.function_names}
        resources = real.resources
    # Then every table, index, stream, queue, topic and subscription is as the template says,
    # and every function of the template is there and loaded (its cold start ran)
    assert differences == []
    assert set(resources.tables) == set(app_template.of_type("AWS::DynamoDB::Table"))
    assert set(resources.queues) == set(app_template.of_type("AWS::SQS::Queue"))
    assert set(resources.functions) == set(app_template.functions)
    assert all(loaded.values()) and loaded
    assert listed["awsEndpoint"] == resources.endpoint
    assert sorted(listed["tables"].values()) == sorted(t.name for t in resources.tables.values())


def test_the_fragments_resources_match_and_drift_would_show(system: EmbeddedSystem) -> None:
    # Given the fragment system (a queue with a DLQ, a topic subscription, a table with TTL and a GSI)
    template, resources = system.template, system.resources
    # When compared as deployed, and with a template that says otherwise
    as_deployed = drift(template, resources)
    changed = fragment_template()
    changed["Resources"]["Queue"]["Properties"]["VisibilityTimeout"] = 46
    changed["Resources"]["Table"]["Properties"]["StreamSpecification"]["StreamViewType"] = "KEYS_ONLY"
    against_changed = drift(parse_template(changed), resources)
    # Then there is no drift, and the comparison does catch a changed queue and stream
    assert as_deployed == []
    assert len(against_changed) == 2
    # And the process environment holds the functions' variables with refs resolved
    table_seen_at_import = system.runner.module("reorder").TABLE_AT_IMPORT
    assert table_seen_at_import == resources.tables["Table"].name
    assert system.runner.conflicts == {"MODE": {"echo": "api", "consumer": "consumer"}}


# ------------------------------------------------------------------------------------------ (2) gateway


def test_the_gateway_builds_http_api_v2_events(system: EmbeddedSystem) -> None:
    # Given an authorized client
    headers = {"Authorization": "Bearer good", "X-Custom": "v", "Cookie": "a=1; b=2"}
    # When it calls a route with a path variable and a repeated query parameter, and posts bytes
    answer = requests.get(
        f"{system.gateway_url}/v1/devices/SN-1/echo?a=1&a=2&b=x", headers=headers, timeout=5
    )
    posted = requests.post(
        f"{system.gateway_url}/v1/devices/SN-1/echo",
        headers={**headers, "Content-Type": "application/octet-stream"},
        data=b"\x00\x01binary",
        timeout=5,
    )
    # Then the function got API Gateway's v2.0 event, and its v2.0 answer became the HTTP response
    assert answer.status_code == 200 and posted.status_code == 200
    assert answer.json() == {"function": system.resources.functions["Echo"].name}
    assert answer.headers["x-mode"] == "api"  # the function's own value of a variable it disagrees on
    assert answer.cookies.get("seen") == "1"
    event, post_event = calls(system, "echo")[-2:]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /v1/devices/{serial}/echo"
    assert event["rawPath"] == "/v1/devices/SN-1/echo"
    assert event["rawQueryString"] == "a=1&a=2&b=x"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x"}
    assert event["pathParameters"] == {"serial": "SN-1"}
    assert event["headers"]["x-custom"] == "v" and "cookie" not in event["headers"]
    assert event["cookies"] == ["a=1", "b=2"]
    context = event["requestContext"]
    assert context["http"]["method"] == "GET" and context["http"]["path"] == "/v1/devices/SN-1/echo"
    assert context["stage"] == "$default" and context["routeKey"] == event["routeKey"]
    assert context["timeEpoch"] == int(system.clock.now().timestamp() * 1000)
    assert context["authorizer"] == {"lambda": {"userId": "user-1"}}
    assert "body" not in event and event["isBase64Encoded"] is False
    assert post_event["isBase64Encoded"] is True
    assert base64.b64decode(post_event["body"]) == b"\x00\x01binary"
    APIGatewayProxyEventV2Model.model_validate(event)  # Powertools' model of the real event accepts it
    ApiGatewayAuthorizerRequestV2.model_validate(calls(system, "authz")[-1])


def test_the_gateway_caches_authorizer_answers_on_the_simulated_clock(system: EmbeddedSystem) -> None:
    # Given a fresh authorizer cache
    system.gateway.clear_authorizer_cache()
    before = len(calls(system, "authz"))
    url = f"{system.gateway_url}/v1/devices/SN-2/echo"
    # When the same token calls twice within the TTL, then again after the TTL passed
    first = requests.get(url, headers={"Authorization": "Bearer good"}, timeout=5)
    second = requests.get(url, headers={"Authorization": "Bearer good"}, timeout=5)
    within_ttl = len(calls(system, "authz")) - before
    system.advance(AUTH_TTL + 1)
    third = requests.get(url, headers={"Authorization": "Bearer good"}, timeout=5)
    # Then the authorizer ran once within the TTL and once more after it
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 200]
    assert within_ttl == 1
    assert len(calls(system, "authz")) - before == 2
    request = calls(system, "authz")[-1]
    assert request["type"] == "REQUEST" and request["identitySource"] == ["Bearer good"]
    assert request["routeArn"].endswith("/$default/GET/v1/devices/SN-2/echo")


def test_the_gateway_answers_like_api_gateway(system: EmbeddedSystem) -> None:
    # Given the fragment's routes
    before = len(calls(system, "authz"))
    base = system.gateway_url
    # When requests lack a token, carry a denied one, match no route, or reach a failing function
    missing = requests.get(f"{base}/v1/devices/SN-3/echo", timeout=5)
    denied = requests.get(f"{base}/v1/devices/SN-3/echo", headers={"Authorization": "Bearer bad"}, timeout=5)
    unknown = requests.get(f"{base}/v1/nothing/here", timeout=5)
    failing = requests.get(f"{base}/boom", timeout=5)
    greedy = requests.get(f"{base}/public/a/b/c", timeout=5)
    too_big = requests.post(f"{base}/public/x", data=b"x" * (10 * 1024 * 1024 + 1), timeout=30)
    # Then API Gateway's own answers come back, and a missing token never reaches the authorizer
    assert (missing.status_code, missing.json()) == (401, {"message": "Unauthorized"})
    assert (denied.status_code, denied.json()) == (403, {"message": "Forbidden"})
    assert (unknown.status_code, unknown.json()) == (404, {"message": "Not Found"})
    assert (failing.status_code, failing.json()) == (500, {"message": "Internal Server Error"})
    assert too_big.status_code == 413
    assert greedy.status_code == 200 and calls(system, "echo")[-1]["pathParameters"] == {"proxy": "a/b/c"}
    assert len(calls(system, "authz")) - before == 1  # the denied one only
    assert requests.get(f"{base}/__sandbox/resources", timeout=5).json()["tables"] == {
        "Table": system.resources.tables["Table"].name
    }


# ------------------------------------------------------------------------------------------ (3) SQS pump


def test_sqs_pump_retries_only_reported_failures_then_redrives_to_the_dlq(system: EmbeddedSystem) -> None:
    # Given three notifications published to the topic (the queue redrives after 2 receives)
    publisher = SnsPublisher(system.resources.client("sns"), system.resources.notification_topic_arn)
    before = len(calls(system, "consumer"))
    for message in ("ok-1", "fail-1", "ok-2"):
        publisher.publish(
            {"Message": message, "MessageAttributes": {"version": {"Type": "String", "Value": "2"}}}
        )
    # When the pumps drain
    system.drain()
    # Then the batch ran once, only the reported failure came back, and after 2 receives it is in the DLQ
    seen = [message for message, _record, _mode in calls(system, "consumer")[before:]]
    assert sorted(seen) == ["fail-1", "fail-1", "ok-1", "ok-2"]
    _message, record, mode = calls(system, "consumer")[before]
    assert mode == "consumer"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == system.resources.queues["Queue"].arn
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    SqsModel.model_validate({"Records": [record]})  # Powertools' model of Lambda's SQS event
    dead = system.dlq_messages()["Dlq"]
    assert [json.loads(m["body"])["Message"] for m in dead] == ["fail-1"]
    assert system.queue_depths()["Queue"] == 0


# ------------------------------------------------------------------------------------------ (4) stream pump


def test_stream_pump_filters_bisects_retries_and_sends_the_rest_to_on_failure(system: EmbeddedSystem) -> None:
    # Given writes to the table: two not due, three due of which one poisons its batch
    dynamodb = system.resources.client("dynamodb")
    table = system.resources.tables["Table"].name
    pump = next(p for p in system.pumps if isinstance(p, StreamPump))
    filtered_before = pump.stats.filtered_out
    before = len(calls(system, "reorder"))
    for key, extra in (
        ("a", {"due": {"BOOL": False}}),
        ("b", {"due": {"BOOL": True}}),
        ("c", {"due": {"BOOL": True}, "poison": {"BOOL": True}}),
        ("d", {"due": {"BOOL": True}}),
        ("e", {}),
    ):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": key}, **extra})
    # When the pumps drain
    system.drain()
    # Then the filter dropped the two not due, the failing batch was bisected down to the poison record,
    # which was retried once (MaximumRetryAttempts 1) and then sent to the on-failure queue
    assert pump.stats.filtered_out - filtered_before == 2
    assert calls(system, "reorder")[before:] == [["b", "c", "d"], ["b"], ["c", "d"], ["c"], ["c"], ["d"]]
    failures = [json.loads(m["body"]) for m in system.dlq_messages()["StreamDlq"]]
    assert len(failures) == 1
    info = failures[0]["DDBStreamBatchInfo"]
    assert failures[0]["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failures[0]["requestContext"]["approximateInvokeCount"] == 2
    assert failures[0]["responseContext"]["functionError"] == "Unhandled"
    assert info["batchSize"] == 1 and info["startSequenceNumber"] == info["endSequenceNumber"]
    assert info["streamArn"] == system.resources.tables["Table"].stream_arn
    DynamoDBStreamLambdaOnFailureDestinationModel.model_validate(failures[0])
    DynamoDBStreamModel.model_validate(system.runner.module("reorder").EVENTS[-1])


def test_stream_pump_keeps_reading_after_a_refused_transaction(system: EmbeddedSystem) -> None:
    # Given a record read, then a transaction the table refuses (moto restores a copy of the table, its
    # stream shard included, when a TransactWriteItems condition fails)
    dynamodb = system.resources.client("dynamodb")
    table = system.resources.tables["Table"].name
    pump = next(p for p in system.pumps if isinstance(p, StreamPump))
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "before-refusal"}})
    system.drain()
    received = pump.stats.received
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"pk": {"S": "before-refusal"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            ]
        )
    # When the table is written again and the pumps drain
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "after-refusal"}, "due": {"BOOL": True}})
    system.drain()
    # Then the stream pump read the new record
    assert pump.stats.received == received + 1


# ------------------------------------------------------------------------------------------ (5) schedules


def test_schedules_fire_on_the_simulated_clock_each_at_its_time(system: EmbeddedSystem) -> None:
    # Given the hourly planner and the daily 02:30 job, and the clock somewhere in the first day
    start, before = system.clock.now(), len(calls(system, "planner"))
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(hours=3, minutes=1)
    # When three hours pass
    system.advance((end - start).total_seconds())
    # Then each hourly occurrence ran once, at its own simulated time, with the time in its input
    hours = [anchor + timedelta(hours=h) for h in range(1, 8) if start < anchor + timedelta(hours=h) <= end]
    expected = [h.strftime("%Y-%m-%dT%H:%M:%SZ") for h in hours]
    fired = calls(system, "planner")[before:]
    assert [event["at"] for event, _now in fired] == expected
    assert [now[:19] for _event, now in fired] == [at[:19] for at in expected]
    # And the daily cron put its input on its queue
    jobs = system.resources.client("sqs").receive_message(QueueUrl=system.resources.queues["Jobs"].url)
    assert [m["Body"] for m in jobs["Messages"]] == ['{"at":"2026-01-01T02:30:00Z"}']


def test_a_clock_moved_through_the_simulator_fires_schedules_on_the_next_drain(
    system: EmbeddedSystem,
) -> None:
    # Given the clock moved by the simulator's control route, as `make sandbox` users do
    before = len(calls(system, "planner"))
    system.control.advance_clock(3600)
    # When the pumps next run
    system.drain()
    # Then the hour that passed fired the planner once
    assert len(calls(system, "planner")) - before == 1


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("rate(15 minutes)", "2026-01-01T00:20:00", "2026-01-01T00:30:00"),
        ("cron(0 6 ? * MON-FRI *)", "2026-01-03T12:00:00", "2026-01-05T06:00:00"),  # Saturday → Monday
        ("cron(*/20 9-10 * * ? *)", "2026-01-01T10:45:00", "2026-01-02T09:00:00"),
        ("cron(0 0 1 JAN,JUL ? *)", "2026-01-01T00:00:00", "2026-07-01T00:00:00"),
        ("at(2026-02-01T08:00:00)", "2026-01-01T00:00:00", "2026-02-01T08:00:00"),
    ],
)
def test_schedule_expressions(expression: str, after: str, expected: str) -> None:
    # Given an expression anchored at the sandbox start
    occurrences = Occurrences(expression, "UTC", datetime(2026, 1, 1, tzinfo=UTC))
    # When asked for the next occurrence
    found = occurrences.next_after(datetime.fromisoformat(after).replace(tzinfo=UTC))
    # Then it is the expected one
    assert found == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_in_background_mode_a_clock_advance_fires_schedules_without_a_drain_call(handlers_dir: Path) -> None:
    # Given a system serving in the background, as `make sandbox` runs it
    with EmbeddedSystem(
        template=fragment_template(),
        functions_dir=handlers_dir,
        gateway_port=0,
        simulator_port=0,
        background=True,
        stack_name="SandboxBackground",
    ) as background:
        fired = threading.Event()
        background.runner.on_invocation.append(lambda outcome: outcome.function == "planner" and fired.set())
        # When the clock moves an hour through POST /__sim/clock
        background.control.advance_clock(3600)
        # Then the background loop notices and runs the planner (a wait on an event, not a sleep)
        assert fired.wait(timeout=10)
