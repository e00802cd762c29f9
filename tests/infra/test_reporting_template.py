"""Template assertions for the reporting construct: properties, not counts. Synthesized once per module."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from drs_core import schema
from infra.app_factory import build_app
from infra.reporting import JOB_MAX_RECEIVES, WORKER_TIMEOUT


@pytest.fixture(scope="module")
def template() -> Template:
    app = build_app(context={"aws:cdk:bundling-stacks": []})
    return Template.from_stack(app.node.find_child("DrsReplenishment-dev"))


def logical_id(template: Template, kind: str, path_part: str) -> str:
    """The one resource of ``kind`` whose logical id contains ``path_part``."""
    (found,) = [name for name in template.find_resources(kind) if path_part in name]
    return found


def function_id(template: Template, folder: str) -> str:
    functions = template.find_resources(
        "AWS::Lambda::Function",
        {"Properties": {"Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": folder}}}},
    )
    (found,) = functions
    return found


def statements_of(template: Template, role_part: str) -> list[dict[str, Any]]:
    """The statements of the default policy attached to the role whose logical id contains ``role_part``."""
    role = logical_id(template, "AWS::IAM::Role", role_part)
    policies = [
        policy["Properties"]["PolicyDocument"]["Statement"]
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
    ]
    return [statement for document in policies for statement in document]


def actions_on(statements: list[dict[str, Any]], resource: Any) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if resource in resources:
            actions = statement["Action"]
            found |= set(actions if isinstance(actions, list) else [actions])
    return found


def arn(logical: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical, "Arn"]}


def test_state_table_has_the_sparse_report_index_with_status_projected(template):
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "GlobalSecondaryIndexes": Match.array_with(
                [
                    {
                        "IndexName": schema.REPORT_INDEX,
                        "KeySchema": [
                            {"AttributeName": schema.REPORT_INDEX_PK, "KeyType": "HASH"},
                            {"AttributeName": schema.STATE_PK, "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["status"]},
                    }
                ]
            )
        },
    )


def test_schedule_runs_hourly_and_passes_its_scheduled_time_to_the_planner(template):
    planner = function_id(template, "report_planner")
    role = logical_id(template, "AWS::IAM::Role", "ReportingScheduleRole")
    dlq = logical_id(template, "AWS::SQS::Queue", "ReportingPlannerDlq")
    template.has_resource_properties(
        "AWS::Scheduler::Schedule",
        {
            # On the hour (a rate would fire at deploy time + n hours), in UTC
            "ScheduleExpression": "cron(0 * * * ? *)",
            "ScheduleExpressionTimezone": "Etc/UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "Target": {
                "Arn": arn(planner),
                "RoleArn": arn(role),
                "Input": json.dumps(
                    {"scheduledTime": "<aws.scheduler.scheduled-time>"}, separators=(",", ":")
                ),
                # Bounded delivery retries; what is still undelivered goes to the planner DLQ
                "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 1800},
                "DeadLetterConfig": {"Arn": arn(dlq)},
            },
        },
    )


def test_schedule_role_may_invoke_the_planner_and_nothing_else(template):
    planner = function_id(template, "report_planner")
    statements = statements_of(template, "ReportingScheduleRole")
    dlq = logical_id(template, "AWS::SQS::Queue", "ReportingPlannerDlq")
    assert statements == [
        {"Action": "lambda:InvokeFunction", "Effect": "Allow", "Resource": arn(planner)},
        {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": arn(dlq)},
    ]
    role = template.find_resources("AWS::IAM::Role")[
        logical_id(template, "AWS::IAM::Role", "ReportingScheduleRole")
    ]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_job_queue_is_encrypted_redrives_to_its_dlq_and_outlasts_the_worker(template):
    dlq = logical_id(template, "AWS::SQS::Queue", "ReportingJobsDlq")
    key = logical_id(template, "AWS::KMS::Key", "DataKey")
    queue = template.find_resources("AWS::SQS::Queue")[
        logical_id(template, "AWS::SQS::Queue", "ReportingJobs2")
    ]
    props = queue["Properties"]
    assert props["RedrivePolicy"] == {"deadLetterTargetArn": arn(dlq), "maxReceiveCount": JOB_MAX_RECEIVES}
    assert props["KmsMasterKeyId"] == arn(key)
    assert props["VisibilityTimeout"] >= 6 * WORKER_TIMEOUT.to_seconds()
    template.has_resource_properties(
        "AWS::SQS::Queue", {"KmsMasterKeyId": arn(key), "MessageRetentionPeriod": 14 * 24 * 3600}
    )


def test_both_report_queues_refuse_plain_http(template):
    for part in ("ReportingJobsDlq", "ReportingJobs2"):
        queue = logical_id(template, "AWS::SQS::Queue", part)
        template.has_resource_properties(
            "AWS::SQS::QueuePolicy",
            {
                "Queues": [{"Ref": queue}],
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                            )
                        ]
                    )
                },
            },
        )


def test_worker_is_capped_by_its_event_source_not_a_reservation(template):
    worker = function_id(template, "report_worker")
    queue = logical_id(template, "AWS::SQS::Queue", "ReportingJobs2")
    # No function reserves concurrency: a reservation fails the deploy in a low-quota account
    for name, function in template.find_resources("AWS::Lambda::Function").items():
        assert "ReservedConcurrentExecutions" not in function["Properties"], name
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {"Variables": Match.object_like({"POWERTOOLS_SERVICE_NAME": "report_worker"})},
            "Timeout": WORKER_TIMEOUT.to_seconds(),
        },
    )
    # The DRS call budget is the event source's maximum concurrency instead
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": {"Ref": worker},
            "EventSourceArn": arn(queue),
            "BatchSize": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": 10},
        },
    )


def test_planner_may_query_the_report_index_and_send_jobs_only(template):
    statements = statements_of(template, "ReportingPlannerFnRole")
    state = logical_id(template, "AWS::DynamoDB::Table", "DataState")
    idempotency = logical_id(template, "AWS::DynamoDB::Table", "DataIdempotency")
    queue = logical_id(template, "AWS::SQS::Queue", "ReportingJobs2")
    index = {"Fn::Join": ["", [arn(state), f"/index/{schema.REPORT_INDEX}"]]}
    assert actions_on(statements, index) == {"dynamodb:Query"}
    assert actions_on(statements, arn(state)) == set()
    assert actions_on(statements, arn(queue)) == {"sqs:SendMessage"}
    assert actions_on(statements, arn(idempotency)) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }
    every_action = {action for statement in statements for action in _as_list(statement["Action"])}
    assert not any(action.endswith("*") or "Scan" in action for action in every_action)


def test_worker_reads_and_updates_state_and_tokens_and_reads_the_lwa_secret(template):
    statements = statements_of(template, "ReportingWorkerFnRole")
    state = logical_id(template, "AWS::DynamoDB::Table", "DataState")
    tokens = logical_id(template, "AWS::DynamoDB::Table", "DataTokens")
    key = logical_id(template, "AWS::KMS::Key", "DataKey")
    assert actions_on(statements, arn(state)) == {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"}
    assert actions_on(statements, arn(tokens)) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert actions_on(statements, arn(key)) == {"kms:Encrypt", "kms:Decrypt"}
    (secret,) = [s for s in statements if s["Action"] == "secretsmanager:GetSecretValue"]
    assert secret["Resource"]["Fn::Join"][1][-1] == ":secret:drs/lwa-client-secret-??????"


def test_dlq_alarm_fires_on_the_first_parked_job(template):
    dlq = logical_id(template, "AWS::SQS::Queue", "ReportingJobsDlq")
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}],
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        },
    )


def test_coverage_alarm_compares_due_and_sent_over_each_completed_utc_day(template):
    alarm = template.find_resources("AWS::CloudWatch::Alarm")[
        logical_id(template, "AWS::CloudWatch::Alarm", "ReportingCoverageAlarm")
    ]["Properties"]
    assert alarm["EvaluationWindow"] == {"WallClockWindow": {"Timezone": "UTC"}}
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["EvaluationPeriods"]) == (
        "GreaterThanThreshold",
        0,
        1,
    )
    queries = {query["Id"]: query for query in alarm["Metrics"]}
    assert queries["expr_1"]["Expression"] == "FILL(due, 0) - FILL(sent, 0) - FILL(skipped, 0)"
    for query_id, name, service in (
        ("due", "ReportsDue", "report_planner"),
        ("sent", "ReportsSent", "report_worker"),
        ("skipped", "ReportsSkipped", "report_worker"),
    ):
        stat = queries[query_id]["MetricStat"]
        assert stat["Metric"] == {
            "Namespace": "DrsReplenishment",
            "MetricName": name,
            "Dimensions": [{"Name": "service", "Value": service}],
        }
        assert (stat["Period"], stat["Stat"]) == (86400, "Sum")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
