"""Cross-cutting template assertions over the whole stack: every queue, mapping, function, role, alarm and
the dashboard. Properties, not counts: each test finds the resources it checks, so a new queue or
function is checked too. Synthesized once per module.

Per-concern properties live in the concern's own test module and are not repeated here: table keys,
encryption and PITR (test_data_template), the stream filter and its retries (test_ordering_template), the
SNS topic policy's DRS principal (test_notifications_template), the schedule and the worker's maximum
concurrency (test_reporting_template).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Template

from drs_core.services.reordering import ReorderOutcome
from infra.app_factory import ROOT, build_app
from infra.constants import METRICS_NAMESPACE
from infra.functions import SharedLayers
from infra.monitoring import (
    DRS_CALL_DIMENSIONS,
    DRS_CALL_METRICS,
    NOTIFICATION_DIMENSIONS,
    NOTIFICATION_METRIC,
    REAUTH_SERVICES,
)

STACK_ID = "DrsReplenishment-dev"
FUNCTION_FOLDERS = sorted(path.parent.name for path in (ROOT / "functions").glob("*/handler.py"))
TLS_DENY = {"Bool": {"aws:SecureTransport": "false"}}

# Every action each function's role may take. Widening any role fails here first; the per-concern tests
# say on which resource each action is granted.
EXPECTED_ACTIONS: dict[str, list[str]] = {
    "companion_api": [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "kms:Decrypt",
        "kms:Encrypt",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
    ],
    "companion_authorizer": ["logs:CreateLogStream", "logs:PutLogEvents"],
    "device_authorizer": ["dynamodb:GetItem", "kms:Decrypt", "logs:CreateLogStream", "logs:PutLogEvents"],
    "notifications": [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "kms:Decrypt",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:ReceiveMessage",
    ],
    "reorder_decision": [
        "dynamodb:DescribeStream",
        "dynamodb:GetItem",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
        "dynamodb:UpdateItem",
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Encrypt",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:SendMessage",
    ],
    "report_planner": [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:SendMessage",
    ],
    "report_worker": [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "kms:Decrypt",
        "kms:Encrypt",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:ReceiveMessage",
    ],
    "usage_ingestion": [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "kms:Decrypt",
        "kms:Encrypt",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    ],
}


# --- fixtures and helpers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    app = build_app(context={"aws:cdk:bundling-stacks": []})
    template = Template.from_stack(app.node.find_child(STACK_ID)).to_json()
    return {**template["Resources"], "__outputs__": template["Outputs"]}


def of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in resources.items()
        if name != "__outputs__" and resource["Type"] == kind
    }


def functions(resources: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """folder under functions/ → (logical id, properties), by the service name Powertools is given."""
    return {
        props["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]: (name, props)
        for name, props in of_type(resources, "AWS::Lambda::Function").items()
    }


def role_statements(resources: dict[str, Any], function_props: dict[str, Any]) -> list[dict[str, Any]]:
    role = function_props["Role"]["Fn::GetAtt"][0]
    assert "Policies" not in resources[role]["Properties"] and not resources[role]["Properties"].get(
        "ManagedPolicyArns"
    ), "permissions only through the role's default policy"
    return [
        statement
        for policy in of_type(resources, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Roles"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def queue_of(arn: Any) -> str:
    """The logical id of the queue an ``Fn::GetAtt [queue, Arn]`` points at."""
    assert isinstance(arn, dict) and arn["Fn::GetAtt"][1] == "Arn", arn
    return arn["Fn::GetAtt"][0]


def dead_letter_queues(resources: dict[str, Any]) -> set[str]:
    """Queues something sends its failures to: redrive targets and event source on-failure destinations."""
    redrive_targets = {
        queue_of(props["RedrivePolicy"]["deadLetterTargetArn"])
        for props in of_type(resources, "AWS::SQS::Queue").values()
        if "RedrivePolicy" in props
    }
    on_failure = {
        queue_of(props["DestinationConfig"]["OnFailure"]["Destination"])
        for kind in ("AWS::Lambda::EventSourceMapping", "AWS::Lambda::EventInvokeConfig")
        for props in of_type(resources, kind).values()
        if "DestinationConfig" in props
    }
    undelivered = {
        queue_of(props["Target"]["DeadLetterConfig"]["Arn"])
        for props in of_type(resources, "AWS::Scheduler::Schedule").values()
        if "DeadLetterConfig" in props["Target"]
    }
    return redrive_targets | on_failure | undelivered


def dashboard_body(resources: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's JSON, with CloudFormation references replaced by a placeholder."""
    (props,) = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    parts = props["DashboardBody"]["Fn::Join"][1]
    return json.loads("".join(part if isinstance(part, str) else "REF" for part in parts))


def emitted_metric_names() -> set[str]:
    """Every string literal of the runtime code (drs_core and the handlers), plus the reorder outcome
    names built at run time: a superset of the metric names the code can emit."""
    sources = [*(ROOT / "layers" / "core" / "python").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
    literals = {
        node.value
        for path in sources
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    reorders = {f"Reorder{outcome.value.title().replace('_', '')}" for outcome in ReorderOutcome}
    return literals | reorders


# --- queues and mappings ------------------------------------------------------------------------------


def test_every_queue_is_a_dlq_or_redrives_to_one_after_bounded_receives(resources):
    # Given every queue of the stack, and the queues used as dead-letter destinations
    queues = of_type(resources, "AWS::SQS::Queue")
    dlqs = dead_letter_queues(resources)
    assert dlqs, "the stack has dead-letter queues"
    for name, props in queues.items():
        # Then a queue is either a DLQ that keeps messages the longest SQS allows
        if name in dlqs:
            assert "RedrivePolicy" not in props, name
            assert props["MessageRetentionPeriod"] == 14 * 24 * 3600, name
        # Or redrives to a DLQ of the stack after a bounded number of receives
        else:
            redrive = props["RedrivePolicy"]
            assert 1 <= redrive["maxReceiveCount"] <= 10, name
            assert queue_of(redrive["deadLetterTargetArn"]) in dlqs


def test_every_queue_is_encrypted_and_refuses_plain_http(resources):
    queues = of_type(resources, "AWS::SQS::Queue")
    policies = of_type(resources, "AWS::SQS::QueuePolicy").values()
    for name, props in queues.items():
        # Given each queue, Then it is encrypted at rest
        assert props.get("KmsMasterKeyId") or props.get("SqsManagedSseEnabled") is True, name
        # And a policy on it denies every action over plain HTTP, to everyone
        statements = [
            statement
            for policy in policies
            if {"Ref": name} in policy["Queues"]
            for statement in policy["PolicyDocument"]["Statement"]
        ]
        assert any(
            s["Effect"] == "Deny"
            and s["Action"] == "sqs:*"
            and s["Principal"] == {"AWS": "*"}
            and s["Condition"] == TLS_DENY
            for s in statements
        ), name


def test_every_topic_refuses_plain_http_and_all_but_the_drs_topic_are_encrypted(resources):
    policies = of_type(resources, "AWS::SNS::TopicPolicy").values()
    for name, props in of_type(resources, "AWS::SNS::Topic").items():
        # Given each topic, Then it uses the stack key (but the one DRS publishes to: see
        # test_notifications_template) and denies publishing over plain HTTP
        if name.startswith("NotificationsTopic"):
            assert "KmsMasterKeyId" not in props
        else:
            assert props["KmsMasterKeyId"]["Fn::GetAtt"][0].startswith("DataKey"), name
        statements = [
            s
            for policy in policies
            if {"Ref": name} in policy["Topics"]
            for s in policy["PolicyDocument"]["Statement"]
        ]
        assert any(s["Effect"] == "Deny" and s["Condition"] == TLS_DENY for s in statements), name


def test_every_event_source_mapping_reports_batch_item_failures(resources):
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping")
    queue_arns = {json.dumps({"Fn::GetAtt": [name, "Arn"]}) for name in of_type(resources, "AWS::SQS::Queue")}
    sqs_mappings = [m for m in mappings.values() if json.dumps(m["EventSourceArn"]) in queue_arns]
    assert sqs_mappings, "the stack has SQS event sources"
    # Given every event source (SQS and the stream), Then one bad record never fails its whole batch
    for mapping in mappings.values():
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"], mapping["EventSourceArn"]


# --- functions and roles ------------------------------------------------------------------------------


def test_every_function_runs_python314_on_arm64_with_json_logs_into_its_own_retained_group(resources):
    found = functions(resources)
    log_groups = of_type(resources, "AWS::Logs::LogGroup")
    # Given every function folder, Then exactly one function runs it
    assert sorted(found) == FUNCTION_FOLDERS
    groups_used = set()
    for folder, (_, props) in found.items():
        # And it is Python 3.14 on arm64, logging JSON, with Powertools told its metric namespace
        assert (props["Runtime"], props["Architectures"]) == ("python3.14", ["arm64"]), folder
        assert props["Handler"] == "handler.handler"
        assert props["LoggingConfig"]["LogFormat"] == "JSON", folder
        # And Lambda's own per-invocation start/report lines are not written (see bench/cost.py)
        assert props["LoggingConfig"]["SystemLogLevel"] == "WARN", folder
        assert props["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == METRICS_NAMESPACE
        # And into a log group of its own, with a retention
        group = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert log_groups[group]["RetentionInDays"] == 30, folder
        groups_used.add(group)
        # And tracing stays off unless the context asks (see test_tracing_context_turns_on_active_tracing)
        assert "TracingConfig" not in props, folder
    assert len(groups_used) == len(found)


def test_each_function_role_has_exactly_its_expected_actions(resources):
    # Given each function's role
    granted = {
        folder: sorted({action for s in role_statements(resources, props) for action in as_list(s["Action"])})
        for folder, (_, props) in functions(resources).items()
    }
    # Then it may do exactly what the table says: nothing more, nothing forgotten
    assert granted == EXPECTED_ACTIONS


def test_every_wildcard_resource_of_a_function_role_is_a_known_acknowledged_one(resources):
    # Given every statement of every function role whose resource contains "*"
    for folder, (_, props) in functions(resources).items():
        log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
        for statement in role_statements(resources, props):
            for resource in as_list(statement["Resource"]):
                text = json.dumps(resource)
                if "*" not in text:
                    continue
                actions = as_list(statement["Action"])
                # Then it is one of the three reasoned in the code and acknowledged to cdk-nag:
                # the function's own log streams,
                if actions == ["logs:CreateLogStream", "logs:PutLogEvents"]:
                    assert resource == {
                        "Fn::Join": ["", [{"Fn::GetAtt": [log_group, "Arn"]}, ":log-stream:*"]]
                    }
                # the random six-character suffix of the one LWA client secret,
                elif actions == ["secretsmanager:GetSecretValue"]:
                    assert text.endswith(':secret:drs/lwa-client-secret-??????"]]}'), text
                # or ListStreams, which has no resource-level permission (the stream mapping's)
                else:
                    assert (folder, actions, resource) == ("reorder_decision", ["dynamodb:ListStreams"], "*")


def one_function_template(context: dict[str, str]) -> dict[str, Any]:
    """The resources of a stack holding one function, synthesized with ``context``."""
    from infra.functions import ReplenishmentFunction

    app = App(context={**context, "aws:cdk:bundling-stacks": []})
    stack = Stack(app, "One")
    ReplenishmentFunction(
        stack,
        "Fn",
        name="device_authorizer",
        description="one",
        layers=SharedLayers(stack, "L"),
        environment={},
    )
    return Template.from_stack(stack).to_json()["Resources"]


def the_function(resources: dict[str, Any]) -> dict[str, Any]:
    (fn,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    return fn


def test_tracing_context_turns_on_active_tracing():
    # Given a stack with one function and the context flag tracing=true, When it is synthesized
    template = one_function_template({"tracing": "true"})
    # Then the function traces actively, and its role may send segments (X-Ray has no resource scoping)
    assert the_function(template)["TracingConfig"] == {"Mode": "Active"}
    (policy,) = [r["Properties"] for r in template.values() if r["Type"] == "AWS::IAM::Policy"]
    assert {
        "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
        "Effect": "Allow",
        "Resource": "*",
    } in policy["PolicyDocument"]["Statement"]


def test_system_log_level_context_brings_back_lambdas_own_lines_or_refuses_a_typo():
    # Given the context systemLogLevel=info, When synthesized, Then Lambda writes its start/report lines
    fn = the_function(one_function_template({"systemLogLevel": "info"}))
    assert fn["LoggingConfig"]["SystemLogLevel"] == "INFO"
    # And a value Lambda does not know stops the synth with the choices named
    with pytest.raises(ValueError, match=r"systemLogLevel='LOUD'.*INFO"):
        one_function_template({"systemLogLevel": "loud"})


# --- alarms -------------------------------------------------------------------------------------------


def alarm_topic(resources: dict[str, Any]) -> dict[str, str]:
    (topic,) = [name for name in of_type(resources, "AWS::SNS::Topic") if name.startswith("AlarmsTopic")]
    return {"Ref": topic}


def metric_stats(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm watches, whether it is a single-metric alarm or a math expression."""
    if "MetricName" in alarm:
        return [
            {
                "Namespace": alarm["Namespace"],
                "MetricName": alarm["MetricName"],
                "Dimensions": alarm["Dimensions"],
            }
        ]
    return [query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query]


def test_every_alarm_notifies_the_alarm_topic(resources):
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    # Given every alarm of the stack, Then its action is the alarm topic (the operators' subscription)
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [alarm_topic(resources)], name
        assert alarm["TreatMissingData"] == "notBreaching", name
        # And its name tells the operator which stack and what, not a generated id
        assert re.fullmatch(rf"{STACK_ID}-[A-Z][A-Za-z0-9]+", alarm["AlarmName"]), name


def test_every_dead_letter_queue_has_a_depth_alarm_from_its_first_message(resources):
    alarms = of_type(resources, "AWS::CloudWatch::Alarm").values()
    for dlq in dead_letter_queues(resources):
        # Given each DLQ, Then an alarm watches its visible messages and fires on the first one
        (alarm,) = [
            a
            for a in alarms
            if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}} in a["Dimensions"]
        ]
        first = {"GreaterThanThreshold": 0, "GreaterThanOrEqualToThreshold": 1}
        assert first[alarm["ComparisonOperator"]] == alarm["Threshold"], dlq
        assert alarm["EvaluationPeriods"] == 1


def test_every_function_has_an_error_rate_alarm(resources):
    alarms = of_type(resources, "AWS::CloudWatch::Alarm").values()
    for folder, (function, _) in functions(resources).items():
        # Given each function, Then one alarm divides its errors by its invocations
        (alarm,) = [
            a
            for a in alarms
            if {"Name": "FunctionName", "Value": {"Ref": function}}
            in [d for m in metric_stats(a) for d in m["Dimensions"]]
        ]
        watched = {m["MetricName"] for m in metric_stats(alarm)}
        assert watched == {"Errors", "Invocations"}, folder
        (expression,) = [q["Expression"] for q in alarm["Metrics"] if "Expression" in q]
        assert "100 * FILL(errors, 0) / invocations" in expression
        assert 0 < alarm["Threshold"] <= 100


def test_api_5xx_rate_is_alarmed_per_stage(resources):
    alarms = of_type(resources, "AWS::CloudWatch::Alarm").values()
    # Given the API's 5xx alarm, Then it divides the stage's 5xx by its requests
    (alarm,) = [a for a in alarms if "5xx" in {m["MetricName"] for m in metric_stats(a)}]
    metrics = metric_stats(alarm)
    assert {m["MetricName"] for m in metrics} == {"5xx", "Count"}
    for metric in metrics:
        assert {d["Name"] for d in metric["Dimensions"]} == {"ApiId", "Stage"}
        assert {"Name": "Stage", "Value": "$default"} in metric["Dimensions"]


def test_reauth_alarm_sums_every_function_that_refreshes_device_tokens(resources):
    alarms = of_type(resources, "AWS::CloudWatch::Alarm").values()
    # Given the re-authorisation spike alarm
    (alarm,) = [a for a in alarms if "ReauthRequired" in {m["MetricName"] for m in metric_stats(a)}]
    services = {d["Value"] for m in metric_stats(alarm) for d in m["Dimensions"] if d["Name"] == "service"}
    # Then it counts exactly the functions that may read the LWA client secret, i.e. refresh tokens
    refreshing = {
        folder
        for folder, (_, props) in functions(resources).items()
        if any(
            "secretsmanager:GetSecretValue" in as_list(s["Action"]) for s in role_statements(resources, props)
        )
    }
    assert services == refreshing == set(REAUTH_SERVICES)
    assert all(m["Namespace"] == METRICS_NAMESPACE for m in metric_stats(alarm))


# --- dashboard and outputs ----------------------------------------------------------------------------


def graphed(body: dict[str, Any]) -> tuple[list[list[Any]], list[str]]:
    """The dashboard's plain metric rows and its expressions."""
    rows, expressions = [], []
    for widget in body["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], dict):
                expressions.append(row[0]["expression"])
            else:
                rows.append(row)
    return rows, expressions


def test_dashboard_graphs_only_metrics_the_code_emits_with_the_service_dimension(resources):
    rows, expressions = graphed(dashboard_body(resources))
    emitted = emitted_metric_names()
    app_rows = [row for row in rows if row[0] == METRICS_NAMESPACE]
    assert app_rows
    for row in app_rows:
        # Given each custom metric the dashboard graphs, Then the code emits that name
        name, dimensions = row[1], row[2:-1]
        assert name in emitted, name
        # And it is selected as Powertools emits it: by the service dimension, one of our functions
        assert dimensions[0::2] == ["service"], row
        assert dimensions[1] in FUNCTION_FOLDERS, row
    # And every search names an emitted metric and a dimension set that includes the service
    searches = [
        re.search(r"\{(.*?)\} MetricName=\"(\w+)\"", e) for e in expressions if e.startswith("SEARCH")
    ]
    assert searches
    for match in searches:
        namespace, *dimensions = match.group(1).split(",")
        assert namespace == METRICS_NAMESPACE and "service" in dimensions
        assert match.group(2) in emitted, match.group(2)


def test_dashboard_has_the_key_widgets(resources):
    body = dashboard_body(resources)
    rows, expressions = graphed(body)
    names = {(row[0], row[1]) for row in rows}
    searched = "\n".join(expressions)
    # Given the dashboard, Then it shows API requests, latency and errors per stage
    for metric in ("Count", "Latency", "4xx", "5xx"):
        assert ("AWS/ApiGateway", metric) in names
    # And readings, reorders placed / adopted / failed, token trouble, report coverage
    for metric in ("ReadingsApplied", "ReorderPlaced", "ReorderAdopted", "ReorderRefusedByDrs", "ReportsDue"):
        assert (METRICS_NAMESPACE, metric) in names, metric
    assert 'MetricName="ReauthRequired"' in searched
    # And DRS calls and errors per endpoint, notifications by type and outcome, with their emitted schemas
    drs_schema = ",".join((METRICS_NAMESPACE, *sorted(DRS_CALL_DIMENSIONS)))
    for metric in DRS_CALL_METRICS:
        assert f'{{{drs_schema}}} MetricName="{metric}"' in searched
    notification_schema = ",".join((METRICS_NAMESPACE, *sorted(NOTIFICATION_DIMENSIONS)))
    assert f'{{{notification_schema}}} MetricName="{NOTIFICATION_METRIC}"' in searched
    # And the depth of every DLQ, and the status of every alarm
    sqs_rows = [row for row in rows if row[0] == "AWS/SQS" and row[1] == "ApproximateNumberOfMessagesVisible"]
    assert len(sqs_rows) >= len(dead_letter_queues(resources))
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    shown = {arn.rpartition(":alarm:")[2] for arn in alarm_widget["properties"]["alarms"]}
    assert shown == {alarm["AlarmName"] for alarm in of_type(resources, "AWS::CloudWatch::Alarm").values()}


def test_outputs_name_the_api_the_drs_topic_and_the_dashboard(resources):
    outputs = resources["__outputs__"]
    (dashboard,) = of_type(resources, "AWS::CloudWatch::Dashboard")
    (drs_topic,) = [
        name for name in of_type(resources, "AWS::SNS::Topic") if name.startswith("NotificationsTopic")
    ]
    # Given the stack outputs, Then the operator gets the API URL, the topic for the DRS portal, the dashboard
    assert "execute-api" in json.dumps(outputs["ApiUrl"]["Value"])
    assert outputs["NotificationTopicArn"]["Value"] == {"Ref": drs_topic}
    assert outputs["DashboardName"]["Value"] == {"Ref": dashboard}


def test_functions_agree_on_every_setting_they_share(resources):
    # Given every function's environment (the sandbox runs them in one process from the union)
    seen: dict[str, dict[str, Any]] = {}
    for name, (_, props) in functions(resources).items():
        for variable, value in props.get("Environment", {}).get("Variables", {}).items():
            seen.setdefault(variable, {})[name] = value
    # Then a variable set by several functions has one value (the service name is per function)
    shared = {variable: by_fn for variable, by_fn in seen.items() if len(by_fn) > 1}
    disagreeing = {
        variable: by_fn
        for variable, by_fn in shared.items()
        if variable != "POWERTOOLS_SERVICE_NAME"
        and len({json.dumps(v, sort_keys=True) for v in by_fn.values()}) > 1
    }
    assert "TOKENS_KMS_KEY_ID" in shared
    assert disagreeing == {}
