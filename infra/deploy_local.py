"""``make deploy-local``: the documented deploy path, run for real against a local moto server.

The real, pinned CDK CLI (``package.json``/``package-lock.json``, installed into ``node_modules`` by the
make target) bootstraps a fresh moto server on loopback, publishes every asset (the layers are built
as for AWS), deploys the stack, and destroys it; in between, the stack's outputs and resources are
checked. Opt-in (not part of ``make test``): it builds the dependency layer with pip, which needs PyPI.

What it takes to run the CLI against moto, and why:
- the endpoint is ``http://localhost:PORT``: with ``127.0.0.1`` the SDK addresses S3 path-style and
  moto reads the bucket from the host name wrongly;
- ``--method=direct``: moto rebuilds no stack outputs from a change set;
- ``--no-notices`` and ``CDK_DISABLE_CLI_TELEMETRY``: the CLI calls nothing but the endpoint.
Stack updates and ``cdk diff`` crash inside moto: out of scope. What moto does not model at all (topic
and key policies, API Gateway, Scheduler firing, quotas) is listed in README, Deploy.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from layers.bytecode import RUNTIME_PYTHON
from sandbox.aws import LocalAws

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"
STACK = "DrsReplenishment-dev"
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
SECRET_NAME = "drs/lwa-client-secret"  # noqa: S105 - a name, not a secret
RUNTIME = f"python{RUNTIME_PYTHON}"
OUTPUTS = ("ApiUrl", "NotificationTopicArn", "StateTableName", "DashboardName", "AlarmTopicArn")


def cli_environment(endpoint: str) -> dict[str, str]:
    """The CDK CLI's environment: moto's endpoint and fake credentials, nothing of the caller's AWS."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    return {
        **keep,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }


def check_deployed(outputs: dict[str, str], aws: Callable[[str], Any]) -> list[str]:
    """What is wrong with the deployed stack (empty: nothing): its outputs, and the resources behind them.

    ``aws(service)`` returns a boto3 client of the deployment's endpoint.
    """
    problems = [f"output {name} missing" for name in OUTPUTS if not outputs.get(name)]
    if "://None." in outputs.get("ApiUrl", ""):
        # moto creates no API Gateway v2 API from a template: the reference resolves to "None".
        print("  note: moto created no HTTP API (API Gateway v2 from CloudFormation): ApiUrl names none")
    cloudformation = aws("cloudformation")
    stack = cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        problems.append(f"stack status {stack['StackStatus']}")
    resources = cloudformation.describe_stack_resources(StackName=STACK)["StackResources"]
    # moto lists the resource types it skipped without a type.
    kinds = {resource.get("ResourceType") for resource in resources}
    for kind in ("AWS::Lambda::Function", "AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::SNS::Topic"):
        if kind not in kinds:
            problems.append(f"no {kind} created")
    if outputs.get("StateTableName"):
        table = aws("dynamodb").describe_table(TableName=outputs["StateTableName"])["Table"]
        if table["TableStatus"] != "ACTIVE":
            problems.append(f"state table {table['TableStatus']}")
    if outputs.get("NotificationTopicArn"):
        aws("sns").get_topic_attributes(TopicArn=outputs["NotificationTopicArn"])
    functions = [
        r["PhysicalResourceId"] for r in resources if r.get("ResourceType") == "AWS::Lambda::Function"
    ]
    # The functions' runtime (moto's CloudFormation drops Architectures and Layers: those are held by the
    # template tests only).
    for name in functions:
        config = aws("lambda").get_function_configuration(FunctionName=name)
        if config.get("Runtime") != RUNTIME:
            problems.append(f"function {name} runs {config.get('Runtime')}, not {RUNTIME}")
    if len(functions) < 8:
        problems.append(f"{len(functions)} functions created, expected 8")
    problems += _unpublished_assets(cloudformation, aws("s3"))
    return problems


def _unpublished_assets(cloudformation: Any, s3: Any) -> list[str]:
    """Every code asset the deployed template names (functions and layers), missing from its bucket."""
    body = cloudformation.get_template(StackName=STACK)["TemplateBody"]
    template = json.loads(body) if isinstance(body, str) else body
    missing = []
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        code = props.get("Code") or props.get("Content") or {}
        key = code.get("S3Key")
        if resource["Type"] in ("AWS::Lambda::Function", "AWS::Lambda::LayerVersion") and isinstance(
            key, str
        ):
            bucket = f"cdk-hnb659fds-assets-{ACCOUNT}-{REGION}"
            try:
                s3.head_object(Bucket=bucket, Key=key)
            except s3.exceptions.ClientError:
                missing.append(f"asset of {logical_id} not published ({key})")
    return missing


def main() -> int:
    if not CDK.exists():
        print(
            "deploy-local: the CDK CLI is not installed: run `npm ci` (make deploy-local does)",
            file=sys.stderr,
        )
        return 2
    local = LocalAws(region=REGION).start()
    # moto logs every resource type it skips; README lists them (what local tests cannot prove).
    logging.getLogger("moto").setLevel(logging.ERROR)
    timings: list[tuple[str, float]] = []
    try:
        # The server listens on 127.0.0.1; the CLI must name it localhost (see the module docstring).
        endpoint = local.endpoint.replace("://127.0.0.1:", "://localhost:")
        env = cli_environment(endpoint)

        def aws(service: str) -> Any:
            return boto3.client(
                service,
                endpoint_url=endpoint,
                region_name=REGION,
                aws_access_key_id="local",
                aws_secret_access_key="local",  # noqa: S106 - moto's, not a real credential
            )

        def step(name: str, *argv: str) -> None:
            started = time.monotonic()
            print(f"deploy-local: {name}: cdk {' '.join(argv)}", flush=True)
            subprocess.run([str(CDK), *argv, "--no-notices"], cwd=ROOT, env=env, check=True)  # noqa: S603
            timings.append((name, time.monotonic() - started))

        started = time.monotonic()
        aws("secretsmanager").create_secret(Name=SECRET_NAME, SecretString="local-lwa-client-secret")
        outputs_file = ROOT / "cdk.out" / "deploy-local-outputs.json"
        step("bootstrap", "bootstrap", f"aws://{ACCOUNT}/{REGION}")
        step(
            "deploy",
            "deploy",
            STACK,
            "--method=direct",
            "--require-approval=never",
            "--outputs-file",
            str(outputs_file),
        )
        outputs = json.loads(outputs_file.read_text()).get(STACK, {})
        problems = check_deployed(outputs, aws)
        for name in OUTPUTS:
            print(f"  {name} = {outputs.get(name)}")
        step("destroy", "destroy", STACK, "--force")
        left = [
            s["StackStatus"]
            for s in aws("cloudformation").list_stacks()["StackSummaries"]
            if s["StackName"] == STACK and s["StackStatus"] != "DELETE_COMPLETE"
        ]
        if left:
            problems.append(f"stack {STACK} still there after destroy: {left}")
        total = time.monotonic() - started
    except subprocess.CalledProcessError as failed:
        print(
            f"deploy-local: FAILED: {' '.join(failed.cmd[1:3])} exited {failed.returncode}", file=sys.stderr
        )
        return 1
    finally:
        local.stop()
    for name, seconds in timings:
        print(f"  {name:<10} {seconds:6.1f} s")
    print(f"  {'total':<10} {total:6.1f} s")
    for problem in problems:
        print(f"deploy-local: FAILED: {problem}", file=sys.stderr)
    if not problems:
        print("deploy-local: bootstrapped, deployed, checked and destroyed with the real CDK CLI")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
