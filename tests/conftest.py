"""Fixtures shared by every test layer: a moto-backed AWS with the product's tables, key and secret;
a DRS + LWA simulator on loopback; a Lambda context.

Handlers build their adapters from the environment (``drs_core.dependencies``), so ``aws`` sets the same
variables the CDK app sets and resets the cached adapters around each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from drs_core import dependencies, schema
from drs_core.clock import ManualClock, default_clock, use_clock

REGION = "us-east-1"
SIM_CLIENT_ID = "amzn1.application-oa2-client.sandbox"
SIM_CLIENT_SECRET = "sandbox-secret"

# Safe defaults for any code that builds a boto3 client outside a fixture: never a real account.
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


@dataclass
class AwsEnv:
    """Names of what ``aws`` created, and clients on the mocked account."""

    state_table: str
    tokens_table: str
    idempotency_table: str
    kms_key_id: str
    lwa_secret_name: str
    dynamodb: Any
    kms: Any


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    """The process clock, replaced by a manual one for the test (2026-01-01T00:00Z)."""
    previous = default_clock()
    manual = ManualClock()
    use_clock(manual)
    yield manual
    use_clock(previous)


STATE_TABLE = "state"


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    """moto's DynamoDB holding only the state table (``STATE_TABLE``), one per test module: fast for
    property tests; the module's tests use their own serials or rewrite their items."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        with mock_aws():
            client = boto3.client("dynamodb", region_name=REGION)
            client.create_table(**schema.state_table_kwargs(STATE_TABLE))
            yield client


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEnv]:
    """moto with the state, tokens and idempotency tables, the KMS key and the LWA client secret."""
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        kms = boto3.client("kms", region_name=REGION)
        env = AwsEnv(
            state_table="state",
            tokens_table="tokens",
            idempotency_table="idempotency",
            kms_key_id=kms.create_key(Description="tokens")["KeyMetadata"]["KeyId"],
            lwa_secret_name="drs/lwa-client-secret",
            dynamodb=dynamodb,
            kms=kms,
        )
        dynamodb.create_table(**schema.state_table_kwargs(env.state_table))
        dynamodb.create_table(**schema.tokens_table_kwargs(env.tokens_table))
        dynamodb.create_table(**schema.idempotency_table_kwargs(env.idempotency_table))
        dynamodb.update_time_to_live(**schema.idempotency_ttl_kwargs(env.idempotency_table))
        boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name=env.lwa_secret_name, SecretString=SIM_CLIENT_SECRET
        )
        for name, value in {
            "STATE_TABLE": env.state_table,
            "TOKENS_TABLE": env.tokens_table,
            "IDEMPOTENCY_TABLE": env.idempotency_table,
            "TOKENS_KMS_KEY_ID": env.kms_key_id,
            "LWA_CLIENT_ID": SIM_CLIENT_ID,
            "LWA_CLIENT_SECRET_NAME": env.lwa_secret_name,
            "AWS_DEFAULT_REGION": REGION,
        }.items():
            monkeypatch.setenv(name, value)
        dependencies.reset()
        yield env
    dependencies.reset()


@dataclass
class LambdaContext:
    """The attributes Powertools reads from a real Lambda context."""

    function_name: str = "test-function"
    function_version: str = "$LATEST"
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:test-function"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "2026/01/01/[$LATEST]0"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full", action="store_true", default=False, help="hardening checks (fuzz, soak) at full size: slow"
    )


@pytest.fixture(scope="session")
def full_size(request: pytest.FixtureRequest) -> bool:
    """True under ``--full``: the fuzz and soak checks run at full size instead of their short form."""
    return bool(request.config.getoption("--full"))
