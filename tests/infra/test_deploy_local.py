"""``make deploy-local`` runs the real CDK CLI (opt-in, not part of this suite); what the suite holds is
that the CLI it starts can only reach the local moto server, whatever AWS settings the caller has."""

from __future__ import annotations

import json

import pytest

from infra import deploy_local


def test_the_cli_gets_only_the_local_endpoint_and_fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a caller whose shell points at a real account
    for name, value in {
        "AWS_PROFILE": "production",
        "AWS_ACCESS_KEY_ID": "AKIAREALKEY",
        "AWS_SECRET_ACCESS_KEY": "real-secret",
        "AWS_SESSION_TOKEN": "real-session",
        "AWS_ENDPOINT_URL_S3": "https://s3.example.com",
        "CDK_DEFAULT_ACCOUNT": "999999999999",
    }.items():
        monkeypatch.setenv(name, value)

    # When deploy-local builds the CLI's environment
    env = deploy_local.cli_environment("http://localhost:5123")

    # Then nothing of the caller's AWS or CDK settings reaches it: moto's endpoint by name, fake
    # credentials, the region, and the CLI's telemetry off
    aws = {key: value for key, value in env.items() if key.startswith(("AWS_", "CDK_"))}
    assert aws == {
        "AWS_ENDPOINT_URL": "http://localhost:5123",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": deploy_local.REGION,
        "AWS_DEFAULT_REGION": deploy_local.REGION,
        "CDK_DISABLE_CLI_TELEMETRY": "true",
    }
    assert "PATH" in env


def test_the_cli_is_pinned_in_the_lock_file() -> None:
    package = json.loads((deploy_local.ROOT / "package.json").read_text())
    lock = json.loads((deploy_local.ROOT / "package-lock.json").read_text())
    pinned = package["devDependencies"]["aws-cdk"]
    # An exact version, the one the lock file resolved
    assert pinned[0].isdigit() and pinned == lock["packages"]["node_modules/aws-cdk"]["version"]
