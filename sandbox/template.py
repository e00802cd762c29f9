"""The CDK app's CloudFormation template, and what the embedded system reads from it.

The sandbox runs whatever the template holds: functions, event source mappings, HTTP API routes and
authorizers, schedules and SNS subscriptions are read from the synthesized template, never listed by
hand, so the local system cannot drift from the deployed one. Synthesis takes seconds, so the template
is cached under ``.sandbox-cache/``, keyed by a hash of the files that shape it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".sandbox-cache"
STACK_NAME = "DrsReplenishment-dev"
# What shapes the template: the app, its context, the constructs and the shared key layout.
_TEMPLATE_INPUTS = ("app.py", "cdk.json", "infra", "layers/core/python/drs_core/schema.py")
_SERVICE_NAME_VAR = "POWERTOOLS_SERVICE_NAME"

Template = dict[str, Any]


class TemplateError(ValueError):
    """The template holds something the sandbox cannot run faithfully."""


# ------------------------------------------------------------------------------------------ synthesis


def template_key(root: Path = ROOT) -> str:
    """A hash of every file that shapes the template (and the CDK library's version)."""
    digest = hashlib.sha256()
    for path in _input_files(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    with contextlib.suppress(metadata.PackageNotFoundError):
        digest.update(metadata.version("aws-cdk-lib").encode())
    return digest.hexdigest()[:32]


def _input_files(root: Path) -> Iterator[Path]:
    for name in _TEMPLATE_INPUTS:
        path = root / name
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            )


def synthesize(stack_name: str = STACK_NAME) -> Template:
    """Synthesize the real app (asset bundling skipped: the assets are placeholders) → its template."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from infra.app_factory import build_app  # imported late: starting jsii costs a second or two

    with tempfile.TemporaryDirectory(prefix="sandbox-synth-") as outdir:
        # cdk-nag is `make synth`'s job; the sandbox needs only the template.
        app = build_app(context={"aws:cdk:bundling-stacks": []}, outdir=outdir, nag=False)
        return dict(app.synth().get_stack_by_name(stack_name).template)


def synthesized_template(*, use_cache: bool = True, cache_dir: Path = CACHE_DIR) -> Template:
    """The app's template, from ``.sandbox-cache/`` when nothing that shapes it changed."""
    cached = cache_dir / f"template-{template_key()}.json"
    if use_cache and cached.is_file():
        return json.loads(cached.read_text())
    template = synthesize()
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob("template-*.json"):
        stale.unlink(missing_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp")  # one per process: xdist workers race
    partial.write_text(json.dumps(template, indent=1))
    partial.replace(cached)  # atomic: a concurrent reader never sees half a file
    return template


# ------------------------------------------------------------------------------------------ references


def referenced_ids(value: Any) -> list[str]:
    """Logical ids referenced by ``Ref`` / ``Fn::GetAtt`` / ``Fn::Sub`` anywhere inside ``value``."""
    found: list[str] = []
    _collect_refs(value, found)
    return [ref for ref in found if not ref.startswith("AWS::")]


def _collect_refs(value: Any, found: list[str]) -> None:
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.append(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            found.append(target[0] if isinstance(target, list) else str(target).split(".")[0])
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            text = sub[0] if isinstance(sub, list) else sub
            found.extend(name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", str(text)))
        for key, item in value.items():
            if key not in ("Ref", "Fn::GetAtt"):
                _collect_refs(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect_refs(item, found)


def _target(resources: dict[str, Any], value: Any, *types: str) -> str | None:
    """The first logical id referenced in ``value`` whose resource has one of ``types``."""
    for ref in referenced_ids(value):
        if resources.get(ref, {}).get("Type") in types:
            return ref
    return None


def friendly_name(logical_id: str) -> str:
    """``DataState804A1476`` → ``DataState``: the logical id without CDK's hash suffix."""
    match = re.fullmatch(r"(.+?)[0-9A-F]{8}", logical_id)
    return match.group(1) if match else logical_id


# ------------------------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class FunctionSpec:
    """A Lambda function of ours: its folder under ``functions/`` is its POWERTOOLS_SERVICE_NAME."""

    logical_id: str
    name: str
    handler: str
    environment: dict[str, Any]
    timeout_seconds: int
    memory_mb: int
    reserved_concurrency: int | None
    system_log_level: str = "INFO"  # Lambda's default: a start and a report line per invocation


@dataclass(frozen=True)
class EventSourceMappingSpec:
    logical_id: str
    function: str
    source: str
    source_kind: str  # "sqs" | "dynamodb"
    batch_size: int
    filter_patterns: tuple[str, ...]
    report_batch_item_failures: bool
    bisect_on_error: bool
    maximum_retry_attempts: int  # -1: until the record expires
    maximum_record_age_seconds: int  # -1: the stream's retention
    on_failure: str | None  # logical id of the destination queue or topic
    starting_position: str | None
    enabled: bool


@dataclass(frozen=True)
class AuthorizerSpec:
    logical_id: str
    function: str
    identity_source: tuple[str, ...]
    ttl_seconds: int
    simple_responses: bool
    payload_version: str


@dataclass(frozen=True)
class RouteSpec:
    logical_id: str
    route_key: str
    authorization_type: str
    authorizer: str | None
    function: str | None
    payload_version: str

    @property
    def method(self) -> str:
        return "ANY" if self.route_key == "$default" else self.route_key.split(" ", 1)[0].upper()

    @property
    def path(self) -> str | None:
        return None if self.route_key == "$default" else self.route_key.split(" ", 1)[1]


@dataclass(frozen=True)
class ScheduleSpec:
    logical_id: str
    expression: str
    timezone: str
    target: str | None  # logical id of a function or a queue (templated target)
    target_arn: Any  # raw, for universal targets
    input: Any  # raw template value (may hold intrinsics)
    enabled: bool
    start_date: str | None
    end_date: str | None


@dataclass(frozen=True)
class SubscriptionSpec:
    logical_id: str
    topic: str | None
    protocol: str
    endpoint: Any  # raw template value
    attributes: dict[str, Any]  # RawMessageDelivery, FilterPolicy, FilterPolicyScope, RedrivePolicy


@dataclass
class SandboxTemplate:
    """A template and the parts of it the sandbox runs."""

    template: Template
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    foreign_functions: list[str] = field(default_factory=list)
    mappings: list[EventSourceMappingSpec] = field(default_factory=list)
    authorizers: dict[str, AuthorizerSpec] = field(default_factory=dict)
    routes: list[RouteSpec] = field(default_factory=list)
    schedules: list[ScheduleSpec] = field(default_factory=list)
    subscriptions: list[SubscriptionSpec] = field(default_factory=list)

    @property
    def resources(self) -> dict[str, Any]:
        return self.template.get("Resources", {})

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Logical id → resource, for every resource of ``resource_type``."""
        return {lid: res for lid, res in self.resources.items() if res.get("Type") == resource_type}

    def function_named(self, name: str) -> FunctionSpec:
        """The function whose folder under ``functions/`` is ``name``."""
        for spec in self.functions.values():
            if spec.name == name:
                return spec
        raise KeyError(f"no function {name!r} in the template (have: {sorted(self.function_names)})")

    @property
    def function_names(self) -> list[str]:
        return [spec.name for spec in self.functions.values()]

    def deployable(self) -> Template:
        """The template as the sandbox gives it to moto: without the event source mappings.

        moto would wire a stream mapping into the table and try to run the function in Docker on
        every write; the pumps read the mappings from this object instead (docs/architecture.md §7).
        """
        skipped = {
            lid for lid, res in self.resources.items() if res.get("Type") == "AWS::Lambda::EventSourceMapping"
        }
        resources: dict[str, Any] = {}
        for lid, res in self.resources.items():
            if lid in skipped:
                continue
            copy = dict(res)
            depends = copy.get("DependsOn")
            if isinstance(depends, str):
                depends = [depends]
            if depends:
                kept = [dep for dep in depends if dep not in skipped]
                if kept:
                    copy["DependsOn"] = kept
                else:
                    copy.pop("DependsOn")
            resources[lid] = copy
        outputs = {
            name: out
            for name, out in self.template.get("Outputs", {}).items()
            if not set(referenced_ids(out)) & skipped
        }
        return {**self.template, "Resources": resources, "Outputs": outputs}


def parse_template(template: Template) -> SandboxTemplate:
    """Read functions, mappings, routes, authorizers, schedules and subscriptions from ``template``."""
    parsed = SandboxTemplate(template=template)
    resources = parsed.resources
    for lid, res in resources.items():
        kind, props = res.get("Type"), res.get("Properties", {})
        if kind == "AWS::Lambda::Function":
            spec = _function(lid, props)
            if spec is None:
                parsed.foreign_functions.append(lid)
            else:
                parsed.functions[lid] = spec
        elif kind == "AWS::Lambda::EventSourceMapping":
            parsed.mappings.append(_mapping(resources, lid, props))
        elif kind == "AWS::ApiGatewayV2::Authorizer":
            parsed.authorizers[lid] = _authorizer(resources, lid, props)
        elif kind == "AWS::ApiGatewayV2::Route":
            parsed.routes.append(_route(resources, lid, props))
        elif kind == "AWS::Scheduler::Schedule":
            parsed.schedules.append(_schedule(resources, lid, props))
        elif kind == "AWS::SNS::Subscription":
            parsed.subscriptions.append(_subscription(resources, lid, props))
    for mapping in parsed.mappings:
        if mapping.function not in parsed.functions:
            raise TemplateError(f"event source mapping {mapping.logical_id} targets a function not of ours")
    return parsed


def _function(lid: str, props: dict[str, Any]) -> FunctionSpec | None:
    env = dict(props.get("Environment", {}).get("Variables", {}))
    name = env.get(_SERVICE_NAME_VAR)
    if not isinstance(name, str):
        return None  # a CDK helper function (custom resource provider ...), not one of functions/
    concurrency = props.get("ReservedConcurrentExecutions")
    return FunctionSpec(
        logical_id=lid,
        name=name,
        handler=str(props.get("Handler", "handler.handler")),
        environment=env,
        timeout_seconds=int(props.get("Timeout", 3)),
        memory_mb=int(props.get("MemorySize", 128)),
        reserved_concurrency=int(concurrency) if concurrency is not None else None,
        system_log_level=str(props.get("LoggingConfig", {}).get("SystemLogLevel", "INFO")),
    )


def _mapping(resources: dict[str, Any], lid: str, props: dict[str, Any]) -> EventSourceMappingSpec:
    function = _target(resources, props.get("FunctionName"), "AWS::Lambda::Function")
    source_arn = props.get("EventSourceArn")
    queue = _target(resources, source_arn, "AWS::SQS::Queue")
    table = _target(resources, source_arn, "AWS::DynamoDB::Table")
    if function is None or (queue or table) is None:
        raise TemplateError(f"event source mapping {lid}: cannot tell its function or source")
    filters = props.get("FilterCriteria", {}).get("Filters", [])
    on_failure = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    return EventSourceMappingSpec(
        logical_id=lid,
        function=function,
        source=queue or table,  # type: ignore[arg-type]
        source_kind="sqs" if queue else "dynamodb",
        batch_size=int(props.get("BatchSize", 10 if queue else 100)),
        filter_patterns=tuple(
            f["Pattern"] if isinstance(f["Pattern"], str) else json.dumps(f["Pattern"]) for f in filters
        ),
        report_batch_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
        bisect_on_error=bool(props.get("BisectBatchOnFunctionError", False)),
        maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
        maximum_record_age_seconds=int(props.get("MaximumRecordAgeInSeconds", -1)),
        on_failure=_target(resources, on_failure, "AWS::SQS::Queue", "AWS::SNS::Topic")
        if on_failure
        else None,
        starting_position=props.get("StartingPosition"),
        enabled=bool(props.get("Enabled", True)),
    )


def _authorizer(resources: dict[str, Any], lid: str, props: dict[str, Any]) -> AuthorizerSpec:
    function = _target(resources, props.get("AuthorizerUri"), "AWS::Lambda::Function")
    if props.get("AuthorizerType") != "REQUEST" or function is None:
        raise TemplateError(f"authorizer {lid}: only Lambda REQUEST authorizers are supported")
    return AuthorizerSpec(
        logical_id=lid,
        function=function,
        identity_source=tuple(props.get("IdentitySource", [])),
        ttl_seconds=int(props.get("AuthorizerResultTtlInSeconds", 0)),
        simple_responses=bool(props.get("EnableSimpleResponses", False)),
        payload_version=str(props.get("AuthorizerPayloadFormatVersion", "2.0")),
    )


def _route(resources: dict[str, Any], lid: str, props: dict[str, Any]) -> RouteSpec:
    integration_id = _target(resources, props.get("Target"), "AWS::ApiGatewayV2::Integration")
    function, payload = None, "2.0"
    if integration_id is not None:
        integration = resources[integration_id].get("Properties", {})
        function = _target(resources, integration.get("IntegrationUri"), "AWS::Lambda::Function")
        payload = str(integration.get("PayloadFormatVersion", "2.0"))
    authorizer = props.get("AuthorizerId")
    return RouteSpec(
        logical_id=lid,
        route_key=str(props["RouteKey"]),
        authorization_type=str(props.get("AuthorizationType", "NONE")),
        authorizer=_target(resources, authorizer, "AWS::ApiGatewayV2::Authorizer") if authorizer else None,
        function=function,
        payload_version=payload,
    )


def _schedule(resources: dict[str, Any], lid: str, props: dict[str, Any]) -> ScheduleSpec:
    target = props.get("Target", {})
    return ScheduleSpec(
        logical_id=lid,
        expression=str(props["ScheduleExpression"]),
        timezone=str(props.get("ScheduleExpressionTimezone", "UTC")),
        target=_target(resources, target.get("Arn"), "AWS::Lambda::Function", "AWS::SQS::Queue"),
        target_arn=target.get("Arn"),
        input=target.get("Input"),
        enabled=props.get("State", "ENABLED") == "ENABLED",
        start_date=props.get("StartDate"),
        end_date=props.get("EndDate"),
    )


def _subscription(resources: dict[str, Any], lid: str, props: dict[str, Any]) -> SubscriptionSpec:
    return SubscriptionSpec(
        logical_id=lid,
        topic=_target(resources, props.get("TopicArn"), "AWS::SNS::Topic"),
        protocol=str(props.get("Protocol", "")),
        endpoint=props.get("Endpoint"),
        attributes={
            key: props[key]
            for key in ("RawMessageDelivery", "FilterPolicy", "FilterPolicyScope", "RedrivePolicy")
            if key in props
        },
    )


def load_sandbox_template(template: Template | None = None, *, use_cache: bool = True) -> SandboxTemplate:
    """The parsed template: ``template`` if given (tests), else the real app's (cached synthesis)."""
    return parse_template(template if template is not None else synthesized_template(use_cache=use_cache))
