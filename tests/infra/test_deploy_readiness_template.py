"""What a real ``cdk deploy`` needs and moto cannot see (issue 15), asserted on synthesized templates:
CloudWatch may publish to the alarm topic, the layers' asset hashes cover everything that shapes them,
CORS for browser apps, the planner's schedule and failure path, and context values that fail synth
instead of deploying a system that denies everyone.

The stack is synthesized once per module; the context variations synthesize small stacks or apps
without cdk-nag. Related items live with their concern: the DRS topic's encryption
(test_notifications_template), the worker's concurrency cap and the schedule (test_reporting_template),
the reorder batch size (test_ordering_template), the secret's ARN pattern (test_stack_template).
"""

from __future__ import annotations

import inspect
import shutil
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from drs_core import schema
from infra import functions, preflight
from infra.api import CORS_ALLOWED_HEADERS, Api
from infra.app_factory import build_app
from infra.constants import PLACEHOLDER_LWA_CLIENT_ID
from infra.data import Data
from infra.functions import SharedLayers
from infra.reporting import PLANNER_ASYNC_RETRY_ATTEMPTS
from layers.deps import build as deps_build

STACK_ID = "DrsReplenishment-dev"
NO_BUNDLING = {"aws:cdk:bundling-stacks": []}
REAL_CLIENT_ID = "amzn1.application-oa2-client.0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def template() -> Template:
    app = build_app(context=dict(NO_BUNDLING))
    return Template.from_stack(app.node.find_child(STACK_ID))


def stack_template(context: dict[str, Any], stage: str = "dev") -> Template:
    """The whole stack for ``context`` (no cdk-nag: these tests look at one property)."""
    app = build_app(context={**NO_BUNDLING, "stage": stage, **context}, nag=False)
    return Template.from_stack(app.node.find_child(f"DrsReplenishment-{stage}"))


def resources(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {name: r.get("Properties", {}) for name, r in template.find_resources(kind).items()}


def the(template: Template, kind: str, prefix: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(name, props) for name, props in resources(template, kind).items() if name.startswith(prefix)]
    return found


def function_named(template: Template, folder: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (name, props)
        for name, props in resources(template, "AWS::Lambda::Function").items()
        if props.get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME") == folder
    ]
    return found


def joined(value: Any) -> str:
    """A ``Fn::Join`` (or a plain string) as text, references spelled ``<Ref>``."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else f"<{next(iter(p.values()))}>" for p in parts)


# --- blocker 1: CloudWatch may publish to the alarm topic ---------------------------------------------


def test_cloudwatch_may_publish_this_stacks_alarms_to_the_alarm_topic(template):
    # Given the alarm topic's policy (an explicit one: it replaces SNS's default policy)
    topic, _ = the(template, "AWS::SNS::Topic", "AlarmsTopic")
    (policy,) = [
        p for p in resources(template, "AWS::SNS::TopicPolicy").values() if {"Ref": topic} in p["Topics"]
    ]
    statements = policy["PolicyDocument"]["Statement"]
    # Then CloudWatch is allowed to publish, to this topic only
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish"
    assert allow["Resource"] == {"Ref": topic}
    # And only for alarms of this account named for this stack
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    pattern = joined(allow["Condition"]["ArnLike"]["aws:SourceArn"])
    assert pattern == f"arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:{STACK_ID}-*"
    # And every alarm of the stack is named so that the pattern covers it
    for name, alarm in resources(template, "AWS::CloudWatch::Alarm").items():
        assert alarm["AlarmName"].startswith(f"{STACK_ID}-"), name
    # And the TLS-only deny is still there
    assert any(s["Effect"] == "Deny" for s in statements)


# --- layers: the asset hash covers what shapes them ---------------------------------------------------


def layer_keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The S3 keys of both layers in a freshly synthesized stack."""
    app = cdk.App(context=dict(NO_BUNDLING))
    stack = cdk.Stack(app, "LayersOnly")
    SharedLayers(stack, "Layers")
    found = resources(Template.from_stack(stack), "AWS::Lambda::LayerVersion")
    return {name.removeprefix("Layers")[:4]: props["Content"]["S3Key"] for name, props in found.items()}


def test_the_layers_asset_hashes_cover_every_input_and_the_bytecode_interpreter(monkeypatch, tmp_path):
    # Given the dependency layer's inputs copied where the test may change them
    inputs = []
    for original in functions.DEPS_LAYER_INPUTS:
        copy = tmp_path / original.name
        shutil.copy(original, copy)
        inputs.append(copy)
    monkeypatch.setattr(functions, "DEPS_LAYER_INPUTS", inputs)
    monkeypatch.setattr(functions, "find_interpreter", lambda version: None)
    before = layer_keys(monkeypatch)
    # Then the dependency layer is keyed by more than requirements.txt (the defect: only that file)
    assert {"requirements.txt", "build.py", "bytecode.py"} <= {path.name for path in inputs}
    # When any one input changes, Then the dependency layer gets a new asset, the core layer keeps its own
    for path in inputs:
        path.write_text(path.read_text() + "\n# changed\n")
        after = layer_keys(monkeypatch)
        assert after["Deps"] != before["Deps"], path.name
        assert after["Core"] == before["Core"]
        before = after
    # When the deploying machine has the runtime's Python (bytecode is compiled into the layers), Then
    # both layers get new assets: a source-only layer must not be reused, nor the other way round
    monkeypatch.setattr(functions, "find_interpreter", lambda version: f"/usr/bin/python{version}")
    with_bytecode = layer_keys(monkeypatch)
    assert with_bytecode["Deps"] != before["Deps"]
    assert with_bytecode["Core"] != before["Core"]


def test_the_layers_are_built_for_the_runtime_the_functions_run(template):
    # Given the runtime of every function and layer in the template
    runtimes = {props["Runtime"] for props in resources(template, "AWS::Lambda::Function").values()}
    layers = resources(template, "AWS::Lambda::LayerVersion").values()
    compatible = {runtime for props in layers for runtime in props["CompatibleRuntimes"]}
    # Then there is one, and layers/deps/build.py builds for it by default (function and command line)
    assert runtimes == compatible == {functions.RUNTIME.name}
    default = inspect.signature(deps_build.build).parameters["python"].default
    assert runtimes == {f"python{default}"}
    assert deps_build.parser().parse_args([]).python == default == deps_build.RUNTIME_PYTHON
    assert deps_build.parser().parse_args([]).arch == functions.ARCHITECTURE.name


# --- CORS ---------------------------------------------------------------------------------------------


def test_no_cors_by_default(template):
    (api,) = resources(template, "AWS::ApiGatewayV2::Api").values()
    assert "CorsConfiguration" not in api


def test_allowed_origins_from_context_get_cors_with_the_headers_the_api_reads():
    # Given -c allowedOrigins=… (comma-separated, as the CLI passes it)
    template = stack_template({"allowedOrigins": "https://app.example.com, http://localhost:5173"})
    (api,) = resources(template, "AWS::ApiGatewayV2::Api").values()
    cors = api["CorsConfiguration"]
    # Then exactly those origins may call, with the bearer token, JSON bodies and idempotency keys
    assert cors["AllowOrigins"] == ["https://app.example.com", "http://localhost:5173"]
    assert cors["AllowHeaders"] == ["Authorization", "Content-Type", "Idempotency-Key"]
    assert cors["AllowHeaders"] == CORS_ALLOWED_HEADERS
    assert set(cors["AllowMethods"]) == {"GET", "POST", "PUT", "DELETE"}
    assert cors["AllowCredentials"] is False
    assert 0 < cors["MaxAge"] <= 7200
    # And a JSON list (cdk.json) says the same
    listed = stack_template({"allowedOrigins": ["https://app.example.com"]})
    (api,) = resources(listed, "AWS::ApiGatewayV2::Api").values()
    assert api["CorsConfiguration"]["AllowOrigins"] == ["https://app.example.com"]


@pytest.mark.parametrize(
    "origin", ["*", "https://app.example.com/path", "app.example.com", "ftp://x.example"]
)
def test_an_origin_that_is_not_scheme_host_port_fails_synth(origin):
    with pytest.raises(ValueError, match="CORS origin"):
        stack_template({"allowedOrigins": origin})


def test_another_construct_can_allow_its_origin_even_as_a_deploy_time_token():
    # Given the API construct and an origin known only at deploy time (a CloudFront domain, say)
    app = cdk.App(context=dict(NO_BUNDLING))
    stack = cdk.Stack(app, "ApiWithWebApp")
    api = Api(
        stack,
        "Api",
        data=Data(stack, "Data", removal_policy=cdk.RemovalPolicy.DESTROY),
        layers=SharedLayers(stack, "Layers"),
        lwa_client_id=REAL_CLIENT_ID,
        lwa_client_secret_name="drs/lwa-client-secret",
        allowed_origins=["https://app.example.com"],
    )
    domain = cdk.CfnParameter(stack, "WebDomain").value_as_string
    # When the web-app construct allows its origin
    api.allow_origin(f"https://{domain}")
    # Then the template's CORS carries both
    (props,) = resources(Template.from_stack(stack), "AWS::ApiGatewayV2::Api").values()
    origins = props["CorsConfiguration"]["AllowOrigins"]
    assert origins[0] == "https://app.example.com"
    assert origins[1] == {"Fn::Join": ["", ["https://", {"Ref": "WebDomain"}]]}
    assert api.allowed_origins[0] == "https://app.example.com"


# --- the planner: on the hour, bounded retries, failures kept and alarmed ------------------------------


def test_failed_planner_runs_are_retried_a_bounded_number_of_times_then_kept_in_its_dlq(template):
    planner, _ = function_named(template, "report_planner")
    dlq, dlq_props = the(template, "AWS::SQS::Queue", "ReportingPlannerDlq")
    # Given the planner's asynchronous invocation settings (Scheduler invokes it asynchronously)
    (config,) = [
        props
        for props in resources(template, "AWS::Lambda::EventInvokeConfig").values()
        if props["FunctionName"] == {"Ref": planner}
    ]
    # Then a failed run is retried a bounded number of times, within the hour, then recorded in the DLQ
    assert config["MaximumRetryAttempts"] == PLANNER_ASYNC_RETRY_ATTEMPTS <= 2
    assert config["MaximumEventAgeInSeconds"] <= 3600
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [dlq, "Arn"]}
    # And the schedule sends what it could not deliver to the same DLQ
    (schedule,) = resources(template, "AWS::Scheduler::Schedule").values()
    assert schedule["ScheduleExpression"] == "cron(0 * * * ? *)"
    assert schedule["Target"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq, "Arn"]}}
    assert schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"] <= 3
    # And the planner's role may send there (Lambda sends on-failure records with the function's role)
    role = resources(template, "AWS::Lambda::Function")[planner]["Role"]["Fn::GetAtt"][0]
    sends = [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Roles"]
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Resource"] == {"Fn::GetAtt": [dlq, "Arn"]}
    ]
    # (CDK's send grant, as for the reorder DLQ: SendMessage with the two reads SQS clients make first)
    assert [sorted(s["Action"]) for s in sends] == [
        ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"]
    ]
    assert dlq_props["SqsManagedSseEnabled"] is True
    # And an alarm fires on its first message and notifies the alarm topic
    alarm_topic, _ = the(template, "AWS::SNS::Topic", "AlarmsTopic")
    (alarm,) = [
        a
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}} in a.get("Dimensions", [])
    ]
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == [{"Ref": alarm_topic}]
    assert alarm["AlarmName"] == f"{STACK_ID}-ReportPlansDlqDepth"


def test_a_schedule_expression_from_context_is_used_as_given():
    template = stack_template({"reportScheduleExpression": "cron(30 * * * ? *)"})
    (schedule,) = resources(template, "AWS::Scheduler::Schedule").values()
    assert schedule["ScheduleExpression"] == "cron(30 * * * ? *)"


# --- the worker's concurrency cap from context ----------------------------------------------------------


def test_the_worker_concurrency_from_context_caps_the_event_source_and_reserves_nothing():
    template = stack_template({"reportWorkerConcurrency": "4"})
    worker, props = function_named(template, "report_worker")
    assert "ReservedConcurrentExecutions" not in props
    (mapping,) = [
        m
        for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
        if m["FunctionName"] == {"Ref": worker}
    ]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 4}


@pytest.mark.parametrize("value", ["1", "1001", "ten", "2.5", True])
def test_a_worker_concurrency_outside_the_event_source_range_fails_synth(value):
    with pytest.raises(ValueError, match="reportWorkerConcurrency"):
        stack_template({"reportWorkerConcurrency": value})


# --- context values that would deploy a broken system ---------------------------------------------------


def test_prod_with_the_placeholder_client_id_fails_synth():
    with pytest.raises(ValueError, match="lwaClientId is the placeholder"):
        stack_template({}, stage="prod")
    with pytest.raises(ValueError, match="lwaClientId is the placeholder"):
        stack_template({"lwaClientId": PLACEHOLDER_LWA_CLIENT_ID}, stage="prod")


def test_prod_with_a_real_client_id_synthesizes_and_uses_it():
    template = stack_template({"lwaClientId": REAL_CLIENT_ID}, stage="prod")
    _, authorizer = function_named(template, "companion_authorizer")
    assert authorizer["Environment"]["Variables"]["LWA_CLIENT_ID"] == REAL_CLIENT_ID


def test_dev_may_keep_the_placeholder(template):
    _, authorizer = function_named(template, "companion_authorizer")
    assert authorizer["Environment"]["Variables"]["LWA_CLIENT_ID"] == PLACEHOLDER_LWA_CLIENT_ID


@pytest.mark.parametrize(("value", "ttl"), [("0", 0), (0, 0), ("3600", 3600), (120, 120)])
def test_authorizer_cache_seconds_from_context_including_zero(value, ttl):
    template = stack_template({"authorizerCacheSeconds": value})
    ttls = {
        a["AuthorizerResultTtlInSeconds"]
        for a in resources(template, "AWS::ApiGatewayV2::Authorizer").values()
    }
    assert ttls == {ttl}


@pytest.mark.parametrize("value", ["-1", "3601", "five", "1.5", False])
def test_authorizer_cache_seconds_outside_0_to_3600_fails_synth(value):
    with pytest.raises(ValueError, match="authorizerCacheSeconds"):
        stack_template({"authorizerCacheSeconds": value})


# --- linking fits behind the API, and a half-done one is kept, not forever ------------------------------


def test_held_link_tokens_expire_through_the_tokens_tables_ttl(template):
    _, tokens = the(template, "AWS::DynamoDB::Table", "DataTokens")
    assert tokens["TimeToLiveSpecification"] == {"AttributeName": schema.TOKENS_TTL_ATTR, "Enabled": True}


def test_the_companion_function_ends_before_the_api_gives_up(template):
    # Given the companion function and the registration route's integration
    name, props = function_named(template, "companion_api")
    integrations = [
        i
        for i in resources(template, "AWS::ApiGatewayV2::Integration").values()
        if i["IntegrationUri"] == {"Fn::GetAtt": [name, "Arn"]}
    ]
    assert integrations
    # Then the function times out before API Gateway's 30 s integration timeout: linking learns its
    # retry budgets from the invocation's remaining time, so the API never answers 503 while the
    # function still works on a spent code
    for integration in integrations:
        assert props["Timeout"] * 1000 < integration.get("TimeoutInMillis", 30_000)


def test_preflight_asks_for_the_bootstrap_version_the_template_requires(template):
    # Given the template's CheckBootstrapVersion rule (the versions it refuses)
    (assertion,) = template.to_json()["Rules"]["CheckBootstrapVersion"]["Assertions"]
    refused = assertion["Assert"]["Fn::Not"][0]["Fn::Contains"][0]
    # Then preflight's minimum is the first version it accepts
    assert max(int(v) for v in refused) + 1 == preflight.MIN_BOOTSTRAP_VERSION
