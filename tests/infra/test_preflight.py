"""``make preflight`` against moto: an account ready for ``cdk deploy`` and one that is not.

moto (in process) answers STS, Secrets Manager and SSM as AWS does. It does not implement Lambda's
``GetAccountSettings``; that one call is answered by a botocore ``Stubber`` with the response shape
AWS documents, and the test where nothing answers it shows the check degrading to a warning. The
deploying machine (Python 3.14, Node.js, the installed CDK CLI) is injected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from infra import preflight
from infra.constants import PLACEHOLDER_LWA_CLIENT_ID
from infra.preflight import FAIL, PASS, SKIP, WARN, Machine

REGION = "eu-west-1"
CLIENT_ID = "amzn1.application-oa2-client.0123456789abcdef0123456789abcdef"
GOOD_MACHINE = Machine(
    python_for_bytecode=lambda: "/usr/bin/python3.14",
    node_version=lambda: "v22.11.0",
    cdk_cli_version=preflight.pinned_cdk_cli,
)
BAD_MACHINE = Machine(
    python_for_bytecode=lambda: None, node_version=lambda: "v18.19.0", cdk_cli_version=lambda: None
)


class Account(boto3.Session):
    """A moto session whose Lambda client answers GetAccountSettings with ``quota`` (moto lacks it)."""

    def __init__(self, quota: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.quota = quota

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = super().client(service_name, *args, **kwargs)
        if service_name == "lambda" and self.quota is not None:
            stubber = Stubber(client)
            stubber.add_response(
                "get_account_settings",
                {
                    "AccountLimit": {
                        "TotalCodeSize": 80530636800,
                        "CodeSizeUnzipped": 262144000,
                        "CodeSizeZipped": 52428800,
                        "ConcurrentExecutions": self.quota,
                        "UnreservedConcurrentExecutions": self.quota,
                    },
                    "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
                },
            )
            stubber.activate()
        return client


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def by_check(findings: list[preflight.Finding]) -> dict[str, preflight.Finding]:
    return {finding.check: finding for finding in findings}


def test_a_ready_account_and_machine_pass_every_check(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given an account with the plain-string secret and a current bootstrap, and the client id in context
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="drs/lwa-client-secret", SecretString="amzn1.oa2-cs.v1.the-secret-itself"
    )
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=preflight.BOOTSTRAP_VERSION_PARAMETER, Value="28", Type="String"
    )
    session = Account(quota=1000, region_name=REGION)

    # When preflight runs
    findings = preflight.run_checks(session, {"lwaClientId": CLIENT_ID}, GOOD_MACHINE)

    # Then every check passes
    results = {f.check: f.result for f in findings}
    assert set(results.values()) == {PASS}, results
    assert list(results) == [
        "lwaClientId",
        "credentials and region",
        "Lambda arm64 + runtime",
        "concurrency quota",
        "LWA client secret",
        "CDK bootstrap",
        "Python 3.14 (layer bytecode)",
        "Node.js",
        "CDK CLI (pinned)",
    ]
    found = by_check(findings)
    assert found["credentials and region"].detail.startswith(f"account 123456789012 in {REGION}")
    assert "not probed" in found["Lambda arm64 + runtime"].detail
    # And the table says so, and the secret's value is never printed
    table = preflight.render(findings)
    assert "0 failed, 0 warning(s): ready for cdk deploy" in table
    assert "the-secret-itself" not in table and "amzn1.oa2-cs" not in table


def test_an_unready_account_fails_each_check_with_its_fix(aws: None) -> None:
    # Given a secret stored as JSON, a bootstrap too old for the template, a new account's quota, the
    # placeholder client id, and a machine without Python 3.14, with an old Node.js and no CDK CLI
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="drs/lwa-client-secret", SecretString=json.dumps({"clientSecret": "amzn1.oa2-cs.v1.x"})
    )
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=preflight.BOOTSTRAP_VERSION_PARAMETER, Value="5", Type="String"
    )
    session = Account(quota=10, region_name=REGION)

    # When preflight runs
    found = by_check(preflight.run_checks(session, {"lwaClientId": PLACEHOLDER_LWA_CLIENT_ID}, BAD_MACHINE))

    # Then each problem is a failure or warning that says how to fix it
    expected = {
        "lwaClientId": (FAIL, "-c lwaClientId="),
        "concurrency quota": (FAIL, "L-B99A9384"),
        "LWA client secret": (FAIL, "put-secret-value"),
        "CDK bootstrap": (FAIL, "cdk bootstrap"),
        "Python 3.14 (layer bytecode)": (WARN, "LAMBDA_PYTHON"),
        "Node.js": (FAIL, "Node.js 22"),
        "CDK CLI (pinned)": (WARN, "npm ci"),
    }
    for check, (result, fix) in expected.items():
        assert found[check].result == result, found[check]
        assert fix in found[check].fix, found[check]
    assert "holds JSON" in found["LWA client secret"].detail
    assert "version 5" in found["CDK bootstrap"].detail


def test_a_missing_secret_and_bootstrap_and_an_unreadable_quota(aws: None) -> None:
    # Given an empty account, and no answer to GetAccountSettings (moto does not implement it)
    session = Account(quota=None, region_name=REGION)
    found = by_check(preflight.run_checks(session, {"lwaClientId": CLIENT_ID}, GOOD_MACHINE))
    assert found["LWA client secret"].result == FAIL
    assert "no such secret" in found["LWA client secret"].detail
    assert "create-secret --name drs/lwa-client-secret" in found["LWA client secret"].fix
    assert found["CDK bootstrap"].result == FAIL and "not bootstrapped" in found["CDK bootstrap"].detail
    assert found["concurrency quota"].result == WARN
    assert "lambda:GetAccountSettings" in found["concurrency quota"].fix


def test_a_secret_named_in_context_and_a_quota_under_100_warns(aws: None) -> None:
    boto3.client("secretsmanager", region_name=REGION).create_secret(Name="prod/lwa", SecretString="s3cr3t")
    session = Account(quota=50, region_name=REGION)
    context = {"lwaClientId": CLIENT_ID, "lwaClientSecretName": "prod/lwa", "reportWorkerConcurrency": "10"}
    found = by_check(preflight.run_checks(session, context, GOOD_MACHINE))
    assert found["LWA client secret"].result == PASS
    assert found["concurrency quota"].result == WARN


def test_no_credentials_fail_and_the_account_checks_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no credentials anywhere boto3 looks
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    session = boto3.Session(region_name=REGION)
    found = by_check(preflight.run_checks(session, {"lwaClientId": CLIENT_ID}, GOOD_MACHINE))
    assert found["credentials and region"].result == FAIL
    assert "aws configure" in found["credentials and region"].fix
    for check in ("Lambda arm64 + runtime", "concurrency quota", "LWA client secret", "CDK bootstrap"):
        assert found[check].result == SKIP


def test_a_region_outside_the_aws_partition_is_not_claimed(aws: None) -> None:
    session = Account(quota=1000, region_name="cn-north-1")
    finding = preflight.check_runtime_in_region(session, "cn-north-1")
    assert finding.result == WARN
    assert "lambda-runtimes" in finding.fix


def test_main_reads_cdk_json_and_c_overrides_and_exits_non_zero_on_a_failure(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the repository's cdk.json (no lwaClientId) and an empty account
    # When preflight runs without -c lwaClientId
    code = preflight.main(["--region", REGION], machine=GOOD_MACHINE)
    # Then it prints the table and fails
    out = capsys.readouterr().out
    assert code == 1
    assert "lwaClientId" in out and "FAIL" in out and "to fix:" in out
    assert preflight.read_context(["stage=prod", "lwaClientId=x"])["stage"] == "prod"
    with pytest.raises(ValueError, match="key=value"):
        preflight.read_context(["stage"])
