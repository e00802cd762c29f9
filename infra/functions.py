"""Lambda building blocks shared by every concern: the two layers and one function shape.

Every function: Python 3.14 (the latest Lambda runtime) on arm64, its code from ``functions/<name>/``
(a thin handler), the core layer (``drs_core``) and the dependency layer, its own log group with
retention, JSON logs (Lambda's own lines only from WARN up: ``system_log_level``), and its own role
that may write only to that log group; each concern grants the rest explicitly.

Tracing is off. Measured (aws-xray-sdk 2.15, Powertools 3.37, CPython 3.11, fresh interpreter, median of
5): importing boto3, requests and ``drs_core.observability`` takes 128 ms; adding a Powertools
``Tracer()`` (X-Ray SDK, patching boto3/requests) takes 242 ms, +114 ms (+89 %) on every cold start,
and ``Tracer(auto_patch=False)`` 235 ms. The structured logs and EMF metrics already answer what the
traces would (which call, how long, which outcome) at no cold-start cost. ``-c tracing=true`` turns on
Lambda's active tracing (service-side segments: init, invocation, duration; no SDK, no code change).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import jsii
from aws_cdk import (
    ArnFormat,
    AssetHashType,
    BundlingOptions,
    DockerImage,
    Duration,
    ILocalBundling,
    RemovalPolicy,
    Stack,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from drs_core.catalog import CATALOG_FILE, CatalogError, load_catalog
from infra.constants import METRICS_NAMESPACE
from infra.nag import acknowledge, arn_token
from layers.bytecode import RUNTIME_PYTHON, compile_bytecode, find_interpreter
from layers.deps.build import PLATFORMS
from layers.deps.build import build as build_deps

ROOT = Path(__file__).resolve().parent.parent
# The one runtime of every function, from the version the layers are built for (layers/bytecode.py).
RUNTIME = lambda_.Runtime(f"python{RUNTIME_PYTHON}", lambda_.RuntimeFamily.PYTHON)
ARCHITECTURE = lambda_.Architecture.ARM_64
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
_EXCLUDE = ["__pycache__", "*.pyc", ".pytest_cache"]
# The files whose content shapes each layer (besides the runtime facts in ``layer_fingerprint``).
DEPS_LAYER_INPUTS = [
    ROOT / "requirements.txt",
    ROOT / "layers" / "deps" / "build.py",
    ROOT / "layers" / "bytecode.py",
]
CORE_LAYER_INPUTS = [ROOT / "layers" / "core" / "python", ROOT / "layers" / "bytecode.py"]


def runtime_python() -> str:
    """The Lambda runtime's Python version ("3.14")."""
    return RUNTIME.name.removeprefix("python")


def layer_fingerprint(inputs: list[Path]) -> str:
    """The asset hash of a layer built from ``inputs``: their content and everything else that shapes the
    built layer, so that no change reuses a stale one.

    Besides the files: the runtime (wheels are chosen and bytecode compiled for its Python), the
    architecture (binary wheels), and whether this machine has the runtime's Python to compile bytecode
    with (``layers.bytecode``): a layer built without it ships source only, one built with it ships
    ``.pyc`` files, and each must replace the other.
    """
    digest = hashlib.sha256()
    facts = {
        "runtime": RUNTIME.name,
        "architecture": ARCHITECTURE.name,
        "platform": PLATFORMS[ARCHITECTURE.name],
        "bytecode": "compiled" if find_interpreter(runtime_python()) else "source only",
    }
    digest.update(json.dumps(facts, sort_keys=True).encode())
    for root in inputs:
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                name = path.relative_to(root) if root.is_dir() else Path(path.name)
                digest.update(name.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class _PipWheelsBundling:
    """Builds the dependency layer with pip's cross-platform wheel install: no Docker needed."""

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: object) -> bool:
        build_deps(arch=ARCHITECTURE.name, python=runtime_python(), target=Path(output_dir) / "python")
        return True


@jsii.implements(ILocalBundling)
class _CoreLayerBundling:
    """Copies ``drs_core`` into the layer, compiled for the runtime's Python when one is at hand."""

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: object) -> bool:
        target = Path(output_dir) / "python"
        shutil.copytree(ROOT / "layers" / "core" / "python", target, ignore=shutil.ignore_patterns(*_EXCLUDE))
        compile_bytecode(target, runtime_python())
        return True


def check_model_catalog(path: Path = CATALOG_FILE) -> int:
    """Validate the model catalog the core layer ships (``drs_core/model_catalog.json``): a synth with
    a broken catalog fails here, naming the problem, instead of deploying it. The number of models."""
    try:
        return len(load_catalog(path).models)
    except CatalogError as err:
        raise ValueError(f"model catalog {path}: {err}") from None


class SharedLayers(Construct):
    """``core``: the drs_core library and the model catalog; ``deps``: pinned third-party packages
    (boto3 is the runtime's)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        check_model_catalog()
        self.core = lambda_.LayerVersion(
            self,
            "Core",
            code=lambda_.Code.from_asset(
                str(ROOT / "layers" / "core"),
                exclude=_EXCLUDE,
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=layer_fingerprint(CORE_LAYER_INPUTS),
                bundling=BundlingOptions(
                    image=RUNTIME.bundling_image, local=_CoreLayerBundling(), command=["true"]
                ),
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="drs_core: domain rules, DRS/LWA clients, token vault, state repository",
        )
        self.deps = lambda_.LayerVersion(
            self,
            "Deps",
            code=lambda_.Code.from_asset(
                str(ROOT / "layers" / "deps"),
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=layer_fingerprint(DEPS_LAYER_INPUTS),
                bundling=BundlingOptions(
                    image=RUNTIME.bundling_image, local=_PipWheelsBundling(), command=["true"]
                ),
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="Pinned runtime dependencies (requirements.txt)",
        )

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        return [self.deps, self.core]


def tracing_enabled(scope: Construct) -> bool:
    """Context ``tracing`` (``-c tracing=true``): Lambda active tracing on every function."""
    return str(scope.node.try_get_context("tracing")).lower() == "true"


def system_log_level(scope: Construct) -> lambda_.SystemLogLevel:
    """Context ``systemLogLevel`` (default ``WARN``): which of Lambda's own log lines are kept.

    At ``INFO`` Lambda writes a ``platform.start`` and a ``platform.report`` line around every
    invocation: 10 % of the cost per device-month (bench/cost.py) for figures the standard Lambda
    metrics (Duration, Errors, Throttles, ConcurrentExecutions) already give. ``WARN`` keeps timeouts,
    crashes and init failures. ``-c systemLogLevel=INFO`` brings the per-invocation lines back (max
    memory used, init duration) while investigating.
    """
    value = str(scope.node.try_get_context("systemLogLevel") or "WARN").upper()
    try:
        return lambda_.SystemLogLevel[value]
    except KeyError:
        choices = ", ".join(level.name for level in lambda_.SystemLogLevel)
        raise ValueError(f"context systemLogLevel={value!r}: expected one of {choices}") from None


class ReplenishmentFunction(Construct):
    """One Lambda function with its own log group and least-privilege role.

    ``name`` is the folder under ``functions/``; the handler is ``handler.handler`` inside it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        description: str,
        layers: SharedLayers,
        environment: dict[str, str],
        memory_size: int = 256,
        timeout: Duration | None = None,
        reserved_concurrency: int | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
    ) -> None:
        super().__init__(scope, construct_id)
        self.name = name
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=LOG_RETENTION,
            removal_policy=removal_policy,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs the {name} function",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{self.log_group.log_group_arn}:log-stream:*"],
            )
        )
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::{arn_token(self.log_group)}:log-stream:*]",
            "Lambda names its log streams at run time; the wildcard is confined to this function's own "
            "log group.",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(ROOT / "functions" / name), exclude=_EXCLUDE),
            layers=layers.all,
            memory_size=memory_size,
            timeout=timeout or Duration.seconds(10),
            reserved_concurrent_executions=reserved_concurrency,
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            system_log_level_v2=system_log_level(self),
            tracing=lambda_.Tracing.ACTIVE if tracing_enabled(self) else None,
            environment={
                # Powertools puts this as the ``service`` dimension on every metric: the dashboard and
                # alarms (infra/monitoring.py) select by it.
                "POWERTOOLS_SERVICE_NAME": name,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **environment,
            },
        )
        if tracing_enabled(self):
            acknowledge(
                self.role,
                "AwsSolutions-IAM5[Resource::*]",
                "xray:PutTraceSegments and xray:PutTelemetryRecords, granted for active tracing (context "
                "tracing=true), support no resource-level permission.",
            )
        # Lambda depends on its role and the role's policy; the role half is already implied by the
        # function's GetAtt of the role's ARN, and cfn-lint (W3005) flags it. Keep the policy only.
        policy = self.role.node.find_child("DefaultPolicy").node.default_child
        self.function.node.default_child.add_override(  # type: ignore[union-attr]
            "DependsOn",
            [Stack.of(self).get_logical_id(policy)],  # type: ignore[arg-type]
        )

    def grant_lwa_client_secret(self, secret_name: str) -> None:
        """Let this function read the LWA client secret ``secret_name`` (created by the deployer, named in
        context), and no other secret."""
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"],
                resources=[
                    Stack.of(self).format_arn(
                        service="secretsmanager",
                        resource="secret",
                        # Secrets Manager appends "-" and six random characters to a secret's ARN:
                        # "??????" matches exactly those, where "-*" would also match another secret
                        # whose name merely starts with this one ("drs/lwa-client-secret-old").
                        resource_name=f"{secret_name}-??????",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
