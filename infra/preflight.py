"""``make preflight``: a read-only check of the AWS account and the deploying machine before ``cdk deploy``.

    python -m infra.preflight [-c key=value ...] [--profile NAME] [--region REGION]

Context comes from ``cdk.json`` and ``-c`` like ``cdk`` reads it (``stage``, ``lwaClientId``,
``lwaClientSecretName``, ``reportWorkerConcurrency``). Credentials are the deployer's own (boto3's
chain: ``AWS_PROFILE``, environment, SSO, instance role). Only reads are made: ``sts:GetCallerIdentity``,
``lambda:GetAccountSettings``, ``secretsmanager:DescribeSecret`` and ``GetSecretValue`` (to tell a
plain string from JSON; the value is never printed), ``ssm:GetParameter`` on the CDK bootstrap
version. Prints one table, a fix for each finding, and exits non-zero when a check failed.

What cannot be known read-only: AWS has no API that lists the Lambda runtimes or architectures a region
offers (no dry run of ``CreateFunction`` either). The check says what it did: the region is one the SDK
knows Lambda in, in the ``aws`` partition, where AWS documents arm64 and the Python 3.14 runtime in
every region; elsewhere (China, GovCloud) it warns and names the page to confirm it on.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from infra.constants import PLACEHOLDER_LWA_CLIENT_ID
from layers.bytecode import RUNTIME_PYTHON, find_interpreter

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = f"python{RUNTIME_PYTHON}"
ARCHITECTURE = "arm64"
DEFAULT_SECRET_NAME = "drs/lwa-client-secret"  # noqa: S105 - a name, not a secret
DEFAULT_WORKER_CONCURRENCY = 10
# The synthesized template's CheckBootstrapVersion rule refuses versions 1-5.
MIN_BOOTSTRAP_VERSION = 6
BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
# Lambda keeps this much of the account's concurrency unreserved; ordinary accounts have 1000.
USUAL_CONCURRENCY_QUOTA = 100
MIN_NODE = 20
RECOMMENDED_NODE = 22
RUNTIMES_PAGE = "https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html"

PASS, WARN, FAIL, SKIP = "pass", "warn", "FAIL", "skipped"


@dataclass(frozen=True)
class Finding:
    """One row of the table: what was checked, the result, what was seen, and the fix when not a pass."""

    check: str
    result: str
    detail: str
    fix: str = ""


@dataclass
class Machine:
    """What the checks ask the deploying machine (replaced in tests)."""

    python_for_bytecode: Callable[[], str | None] = field(default=lambda: find_interpreter(RUNTIME_PYTHON))
    node_version: Callable[[], str | None] = field(default=lambda: _command_output(["node", "--version"]))
    cdk_cli_version: Callable[[], str | None] = field(default=lambda: _installed_cdk_cli())


def read_context(overrides: list[str], cdk_json: Path = ROOT / "cdk.json") -> dict[str, Any]:
    """``cdk.json``'s context with ``-c key=value`` overrides applied, as the CDK CLI merges them."""
    context = dict(json.loads(cdk_json.read_text()).get("context", {})) if cdk_json.exists() else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"-c {item!r}: expected key=value")
        context[key] = value
    return context


def run_checks(
    session: boto3.Session, context: dict[str, Any], machine: Machine | None = None
) -> list[Finding]:
    """Every check, in table order. Account checks are skipped when there are no usable credentials."""
    machine = machine or Machine()
    findings = [check_client_id(context)]
    identity = check_credentials(session)
    findings.append(identity)
    region = session.region_name
    if identity.result == PASS and region:
        findings += [
            check_runtime_in_region(session, region),
            check_concurrency(session, context),
            check_secret(session, context),
            check_bootstrap(session, region),
        ]
    else:
        why = "needs credentials and a region (see above)"
        findings += [
            Finding(name, SKIP, why)
            for name in ("Lambda arm64 + runtime", "concurrency quota", "LWA client secret", "CDK bootstrap")
        ]
    findings += [check_bytecode_python(machine), check_node(machine), check_cdk_cli(machine)]
    return findings


# --- the account ------------------------------------------------------------------------------------------


def check_credentials(session: boto3.Session) -> Finding:
    name = "credentials and region"
    region = session.region_name
    try:
        caller = session.client("sts", region_name=region or "us-east-1").get_caller_identity()
    except NoCredentialsError:
        return Finding(
            name, FAIL, "no AWS credentials found", "aws configure, aws sso login, or export AWS_PROFILE"
        )
    except (ClientError, BotoCoreError) as error:
        return Finding(
            name,
            FAIL,
            f"credentials refused: {_code(error)}",
            "renew them (aws sso login) or fix the profile",
        )
    if not region:
        return Finding(
            name,
            FAIL,
            f"account {caller['Account']}, no region",
            "export AWS_REGION=… or aws configure set region …",
        )
    return Finding(name, PASS, f"account {caller['Account']} in {region} as {caller['Arn']}")


def check_runtime_in_region(session: boto3.Session, region: str) -> Finding:
    name = "Lambda arm64 + runtime"
    partition = session.get_partition_for_region(region)
    known = session.get_available_regions("lambda", partition_name=partition)
    if region not in known:
        return Finding(name, FAIL, f"{region}: the SDK knows no Lambda there", "deploy to another region")
    if partition != "aws":
        return Finding(
            name,
            WARN,
            f"{region} is in partition {partition}: not probed (AWS has no API listing a region's runtimes)",
            f"confirm {RUNTIME} on {ARCHITECTURE} in {region} at {RUNTIMES_PAGE}",
        )
    return Finding(
        name,
        PASS,
        f"{RUNTIME} on {ARCHITECTURE}: documented in every {partition} region (not probed: no read-only API)",
    )


def check_concurrency(session: boto3.Session, context: dict[str, Any]) -> Finding:
    name = "concurrency quota"
    workers = int(context.get("reportWorkerConcurrency") or DEFAULT_WORKER_CONCURRENCY)
    try:
        limits = session.client("lambda").get_account_settings()["AccountLimit"]
    except (ClientError, BotoCoreError) as error:
        return Finding(
            name,
            WARN,
            f"could not read the account's Lambda settings ({_code(error)})",
            "allow lambda:GetAccountSettings, or read 'Concurrent executions' in the Service Quotas console",
        )
    quota = int(limits["ConcurrentExecutions"])
    detail = f"{quota} concurrent executions ({limits.get('UnreservedConcurrentExecutions', '?')} unreserved)"
    increase = "request more in Service Quotas: AWS Lambda, 'Concurrent executions' (L-B99A9384)"
    if quota <= workers:
        return Finding(
            name,
            FAIL,
            f"{detail}: the report worker alone may take {workers} (reportWorkerConcurrency)",
            f"{increase}, or -c reportWorkerConcurrency=<fewer than {quota}>",
        )
    if quota < USUAL_CONCURRENCY_QUOTA:
        return Finding(
            name, WARN, f"{detail}: a new account's quota; bursts of devices will be throttled", increase
        )
    return Finding(name, PASS, detail)


def check_secret(session: boto3.Session, context: dict[str, Any]) -> Finding:
    secret_name = str(context.get("lwaClientSecretName") or DEFAULT_SECRET_NAME)
    name = "LWA client secret"
    create = (
        f"aws secretsmanager create-secret --name {secret_name} --secret-string '<your LWA client secret>' "
        "(README, Deploy step 1)"
    )
    client = session.client("secretsmanager")
    try:
        client.describe_secret(SecretId=secret_name)
        value = client.get_secret_value(SecretId=secret_name)
    except ClientError as error:
        if _code(error) == "ResourceNotFoundException":
            return Finding(name, FAIL, f"{secret_name}: no such secret in this account and region", create)
        return Finding(
            name, FAIL, f"{secret_name}: cannot read it ({_code(error)})", "check your permissions"
        )
    plain = (
        f"aws secretsmanager put-secret-value --secret-id {secret_name} --secret-string '<the secret itself>'"
    )
    text = value.get("SecretString")
    if text is None:
        return Finding(name, FAIL, f"{secret_name} holds binary data, not a string", plain)
    if not text.strip():
        return Finding(name, FAIL, f"{secret_name} is empty", plain)
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict | list):
        return Finding(
            name,
            FAIL,
            f"{secret_name} holds JSON; the functions send the whole string to LWA as the secret",
            plain,
        )
    return Finding(name, PASS, f"{secret_name}: a plain string")


def check_bootstrap(session: boto3.Session, region: str) -> Finding:
    name = "CDK bootstrap"
    bootstrap = "npx cdk bootstrap (once per account and region; README, Deploy step 3)"
    try:
        value = session.client("ssm").get_parameter(Name=BOOTSTRAP_VERSION_PARAMETER)["Parameter"]["Value"]
    except ClientError as error:
        if _code(error) == "ParameterNotFound":
            return Finding(
                name, FAIL, f"{region} is not bootstrapped ({BOOTSTRAP_VERSION_PARAMETER} missing)", bootstrap
            )
        return Finding(name, FAIL, f"cannot read {BOOTSTRAP_VERSION_PARAMETER} ({_code(error)})", bootstrap)
    if not value.isdigit() or int(value) < MIN_BOOTSTRAP_VERSION:
        return Finding(
            name,
            FAIL,
            f"bootstrap version {value}; the template needs {MIN_BOOTSTRAP_VERSION} or later",
            bootstrap,
        )
    return Finding(name, PASS, f"bootstrap version {value}")


# --- context ----------------------------------------------------------------------------------------------


def check_client_id(context: dict[str, Any]) -> Finding:
    name = "lwaClientId"
    client_id = str(context.get("lwaClientId") or PLACEHOLDER_LWA_CLIENT_ID)
    fix = "-c lwaClientId=amzn1.application-oa2-client.… (your LWA security profile's client id)"
    if client_id == PLACEHOLDER_LWA_CLIENT_ID:
        return Finding(name, FAIL, "not set: every companion request would be denied", fix)
    if not client_id.startswith("amzn1.application-oa2-client."):
        return Finding(name, WARN, f"{client_id!r} does not look like an LWA client id", fix)
    return Finding(name, PASS, client_id)


# --- the deploying machine --------------------------------------------------------------------------------


def check_bytecode_python(machine: Machine) -> Finding:
    name = f"Python {RUNTIME_PYTHON} (layer bytecode)"
    interpreter = machine.python_for_bytecode()
    if interpreter is None:
        return Finding(
            name,
            WARN,
            "absent: layers ship without bytecode, every cold start compiles them (0.4-1 s more)",
            f"install python{RUNTIME_PYTHON}, or export LAMBDA_PYTHON=/path/to/python{RUNTIME_PYTHON}",
        )
    return Finding(name, PASS, interpreter)


def check_node(machine: Machine) -> Finding:
    name = "Node.js"
    version = machine.node_version()
    match = re.match(r"v?(\d+)\.", version or "")
    if match is None:
        return Finding(name, FAIL, "node not found", f"install Node.js {RECOMMENDED_NODE} or later")
    major = int(match.group(1))
    if major < MIN_NODE:
        return Finding(
            name, FAIL, f"{version}: too old for the CDK", f"install Node.js {RECOMMENDED_NODE} or later"
        )
    if major < RECOMMENDED_NODE:
        return Finding(
            name, WARN, f"{version}: end of life, jsii warns", f"install Node.js {RECOMMENDED_NODE} or later"
        )
    return Finding(name, PASS, str(version))


def check_cdk_cli(machine: Machine) -> Finding:
    name = "CDK CLI (pinned)"
    pinned = pinned_cdk_cli()
    installed = machine.cdk_cli_version()
    if installed is None:
        return Finding(name, WARN, f"aws-cdk {pinned} not installed in node_modules", "npm ci")
    if installed != pinned:
        return Finding(
            name, WARN, f"aws-cdk {installed} installed, package-lock.json pins {pinned}", "npm ci"
        )
    return Finding(name, PASS, f"aws-cdk {installed} (npx cdk …)")


def pinned_cdk_cli() -> str:
    """The CDK CLI version package-lock.json pins."""
    lock = json.loads((ROOT / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/aws-cdk"]["version"])


def _installed_cdk_cli() -> str | None:
    manifest = ROOT / "node_modules" / "aws-cdk" / "package.json"
    return str(json.loads(manifest.read_text())["version"]) if manifest.exists() else None


def _command_output(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        answer = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return None
    return answer.stdout.strip()


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "error"))
    return type(error).__name__


# --- the table ----------------------------------------------------------------------------------------------


def render(findings: list[Finding]) -> str:
    """The findings as one text table, then the fixes, numbered by row."""
    headers = ("check", "result", "detail")
    rows = [(f.check, f.result, f.detail) for f in findings]
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(3)]
    line = "-+-".join("-" * width for width in widths)
    text = [" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(), line]
    text += [" | ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    fixes = [f"  {f.check}: {f.fix}" for f in findings if f.fix and f.result in (FAIL, WARN)]
    if fixes:
        text += ["", "to fix:", *fixes]
    failed = sum(f.result == FAIL for f in findings)
    warned = sum(f.result == WARN for f in findings)
    text += [
        "",
        f"preflight: {failed} failed, {warned} warning(s)" + ("" if failed else ": ready for cdk deploy"),
    ]
    return "\n".join(text)


def main(argv: list[str] | None = None, machine: Machine | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--region", default=None)
    args = parser.parse_args(argv)
    try:
        session = boto3.Session(profile_name=args.profile, region_name=args.region)
    except BotoCoreError as error:  # an unknown profile
        print(f"preflight: {error}", file=sys.stderr)
        return 2
    try:
        findings = run_checks(session, read_context(args.context), machine)
    except NoRegionError:
        findings = [Finding("credentials and region", FAIL, "no region", "export AWS_REGION=…")]
    print(render(findings))
    return 1 if any(f.result == FAIL for f in findings) else 0


if __name__ == "__main__":
    sys.exit(main())
