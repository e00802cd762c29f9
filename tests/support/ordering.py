"""Fixtures for usage ingestion and reorder decisions: the usage route behind the device authorizer, the
reorder function, and a tap on the state table's stream that applies the mapping's filter pattern.

The tap reads moto's stream in order (as the event source mapping would), turns each record into the
Lambda event record shape, and keeps only what ``schema.REORDER_FUNCTION_FILTER_PATTERNS`` let through (moto's
``EventPattern``: the same engine the sandbox pumps use), so the tests invoke the reorder function
exactly as often as the deployed filter would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto.events.models import EventPattern

from drs_core import schema
from drs_core.clock import ManualClock, to_iso
from tests.conftest import REGION, AwsEnv, LambdaContext
from tests.support import api_fixtures
from tests.support.api_fixtures import USAGE, Api, Linked, _import_fresh, concrete
from tests.support.gateway import Answer

REORDER_FILTER = EventPattern.load(json.dumps(schema.REORDER_FILTER_PATTERN))
FUNCTION_FILTERS = [EventPattern.load(json.dumps(p)) for p in schema.REORDER_FUNCTION_FILTER_PATTERNS]
PLACING = {"STANDARD_ORDER_PLACED", "TEST_ORDER_PLACED"}


def lambda_record(raw: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A stream record as Lambda hands it over (times as epoch seconds, the source ARN added)."""
    change = dict(raw["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": raw["eventID"],
        "eventName": raw["eventName"],
        "eventVersion": raw.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": raw.get("awsRegion", REGION),
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }


class StreamTap:
    """Reads the state table's stream from where it last stopped (one shard in moto)."""

    def __init__(self, aws: AwsEnv) -> None:
        self.stream_arn = aws.dynamodb.describe_table(TableName=aws.state_table)["Table"]["LatestStreamArn"]
        # botocore derives streams endpoints from the ARN, which in-process moto does not route.
        self._streams = boto3.client(
            "dynamodbstreams",
            region_name=REGION,
            endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com",
        )
        shard = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"][0]
        self._iterator: str | None = self._streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
        )["ShardIterator"]

    def read(self) -> list[dict[str, Any]]:
        """Every record written since the last read, in order, as Lambda event records."""
        records: list[dict[str, Any]] = []
        while self._iterator:
            answer = self._streams.get_records(ShardIterator=self._iterator, Limit=1000)
            self._iterator = answer.get("NextShardIterator")
            if not answer.get("Records"):
                break
            records.extend(lambda_record(raw, self.stream_arn) for raw in answer["Records"])
        return records

    def due(self) -> list[dict[str, Any]]:
        """The records since the last read that the reorder function's filters let through."""
        return [record for record in self.read() if passes_filters(record)]


def passes_filters(record: dict[str, Any]) -> bool:
    """Whether the reorder function's event-source filters let a stream record through (any one)."""
    return any(pattern.matches_event(record) for pattern in FUNCTION_FILTERS)


@dataclass
class Ordering:
    """The API (companion + usage routes), the reorder function and the stream tap."""

    api: Api
    aws: AwsEnv
    clock: ManualClock
    usage: ModuleType
    reorder: ModuleType
    tap: StreamTap
    context: LambdaContext

    def post_usage(
        self, linked: Linked, readings: list[dict[str, Any]], *, key: str | None = None, **options: Any
    ) -> Answer:
        headers = {"Idempotency-Key": key} if key is not None else None
        return self.api.request(
            "POST",
            USAGE,
            concrete(USAGE, linked.serial),
            authorization=f"Device {linked.device_token}",
            body={"readings": readings},
            headers=headers,
            **options,
        )

    def invoke_reorder(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """One invocation of the reorder function with ``records``; its partial batch response."""
        return self.reorder.handler({"Records": records}, self.context)

    def pump(self) -> int:
        """Deliver every due record (as the mapping would, retrying failed ones once); how many."""
        records = self.tap.due()
        if records:
            answer = self.invoke_reorder(records)
            failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
            retry = [r for r in records if r["dynamodb"]["SequenceNumber"] in failed]
            if retry:
                self.invoke_reorder(retry)
        return len(records)

    def placed(self) -> list[dict[str, Any]]:
        """The replenish calls of the simulator that placed an order."""
        calls = self.api.sim.request("GET", "/__sim/calls")["calls"]
        return [c for c in calls if c["operation"] == "replenish" and c.get("detailCode") in PLACING]

    def now_iso(self) -> str:
        return to_iso(self.clock.now())


@pytest.fixture
def ordering(api: Api, aws: AwsEnv, clock: ManualClock, lambda_context: LambdaContext) -> Iterator[Ordering]:
    """The usage route behind the device authorizer, the reorder function and a stream tap."""
    usage = _import_fresh("functions.usage_ingestion.handler")
    reorder = _import_fresh("functions.reorder_decision.handler")
    api.gateway.route("POST", USAGE, usage.handler, api.functions.device_authorizer.handler)
    yield Ordering(api, aws, clock, usage, reorder, StreamTap(aws), lambda_context)


api = api_fixtures.api
simulator = api_fixtures.simulator
