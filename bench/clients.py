"""DRS client and token vault overhead, each against a bare baseline in the same process.

- DRS ``deviceStatus`` through ``DrsClient`` (pooled session, retry adapter, typed result) vs a bare
  ``requests.Session.post`` with the same headers and body, both against the simulator on loopback.
- ``TokenVault.access_token`` with a cached token (GetItem + KMS Decrypt) vs a bare GetItem + Decrypt,
  on moto in-process.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import boto3
import requests
from moto import mock_aws

from bench.table import ms, print_table, time_calls
from drs_core import schema
from drs_core.adapters.drs_client import DrsClient
from drs_core.adapters.http import build_session
from drs_core.adapters.lwa_client import LwaClient
from drs_core.adapters.token_vault import TokenVault
from drs_core.clock import ManualClock
from sandbox.simulator import SimulatorServer
from sandbox.simulator.control import SimulatorControl

RUNS = 300
CLIENT_ID, SECRET = "amzn1.application-oa2-client.sandbox", "sandbox-secret"


def _drs_rows() -> list[list[object]]:
    with SimulatorServer(port=0, client_id=CLIENT_ID, client_secret=SECRET) as server:
        control = SimulatorControl(server.url)
        customer = control.create_customer()["customerId"]
        slots = {"Filter": {"asin": "B00FILTER1", "quantity": 1, "unit": "count"}}
        code, redirect = control.authorize(customer, model_id="Bench", serial="SNBENCH1", slots=slots)
        token = LwaClient(server.url, CLIENT_ID, SECRET).exchange_code(code, redirect).access_token
        when = datetime(2026, 1, 1, tzinfo=UTC)
        client = DrsClient(server.url, session=build_session())
        bare = requests.Session()
        headers = {
            "Authorization": f"Bearer {token}",
            "x-amzn-type-version": "com.amazon.dash.replenishment.DrsDeviceStatusInput@1.0",
            "x-amzn-accept-type": "com.amazon.dash.replenishment.DrsDeviceStatusResult@1.0",
            "Content-Type": "application/json",
        }
        body = b'{"mostRecentlyActiveDate": "2026-01-01T00:00:00.000Z"}'

        def bare_call() -> None:
            bare.post(f"{server.url}/deviceStatus", data=body, headers=headers, timeout=5).raise_for_status()

        base = time_calls(bare_call, runs=RUNS)
        ours = time_calls(lambda: client.device_status(token, when), runs=RUNS)
    return [
        ["deviceStatus: bare requests.post (baseline)", ms(base.median_s), ms(base.p90_s), 1.0],
        ["deviceStatus: DrsClient", ms(ours.median_s), ms(ours.p90_s), ours.median_s / base.median_s],
    ]


class _NoRefresh:
    def refresh(self, refresh_token: str):  # pragma: no cover - the cached path never refreshes
        raise AssertionError("the benchmark measures the cached path")


def _vault_rows() -> list[list[object]]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        dynamodb, kms = boto3.client("dynamodb"), boto3.client("kms")
        dynamodb.create_table(**schema.tokens_table_kwargs("tokens"))
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        clock = ManualClock()
        vault = TokenVault("tokens", key, _NoRefresh(), clock, dynamodb=dynamodb, kms=kms)

        class Grant:
            access_token, refresh_token, expires_in, token_type = "Atza|bench", "Atzr|bench", 3600, "bearer"

        vault.store("SN1", Grant())
        item = dynamodb.get_item(TableName="tokens", Key={"serial": {"S": "SN1"}})["Item"]
        blob = next(value["B"] for value in item.values() if "B" in value)

        def bare() -> None:
            dynamodb.get_item(TableName="tokens", Key={"serial": {"S": "SN1"}}, ConsistentRead=True)
            kms.decrypt(CiphertextBlob=blob, EncryptionContext={"serial": "SN1"})

        base = time_calls(bare, runs=RUNS)
        ours = time_calls(lambda: vault.access_token("SN1"), runs=RUNS)
    ratio = ours.median_s / base.median_s
    return [
        ["access token: bare GetItem + Decrypt (baseline)", ms(base.median_s), ms(base.p90_s), 1.0],
        [
            "access token: TokenVault (cached)",
            ms(ours.median_s),
            ms(ours.p90_s),
            ratio,
        ],
    ]


def run() -> None:
    headers = ["call", "median ms", "p90 ms", "x baseline"]
    print_table(f"DRS client vs bare HTTP ({RUNS} calls, simulator on loopback)", headers, _drs_rows())
    print_table(f"Token vault vs bare AWS calls ({RUNS} calls, moto in-process)", headers, _vault_rows())
