"""Usage ingestion: DynamoDB calls per reading, reorder invocations per reading, handler time per request.

Everything runs the real usage function (``functions/usage_ingestion/handler.py``) on real-shaped HTTP
API events (the device authorizer's context included, as API Gateway hands it over after a cached
allow), against moto, on a manual clock.

1. **DynamoDB calls per slot reading**, counted with a botocore hook on the function's client: a day of
   hourly readings of a 2-slot device in steady state (target: exactly 1 write, 0 reads), the same with
   an ``Idempotency-Key`` on each request (the idempotency record's own writes, per request), the
   reading that crosses the reorder point (once per need), and the whole day including the daily
   rate update (one extra, refused write per slot per day).
2. **Reorder invocations per reading**: every stream record those readings produced, run through the
   reorder mapping's filters (``schema.REORDER_FUNCTION_FILTER_PATTERNS``, moto's ``EventPattern``). Target: 0
   for readings that need no order, 1 for the reading that crosses the point.
3. **Warm time per request**: the handler (2 readings, 1 reading) against a bare ``UpdateItem`` on the
   same moto backend, measured in this run; the ratio is what the function adds to its writes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from moto import mock_aws
from moto.events.models import EventPattern

from bench.table import ms, print_table, time_calls
from drs_core import dependencies, schema
from drs_core.adapters.state_repository import StateRepository
from drs_core.clock import ManualClock, default_clock, to_iso, use_clock
from drs_core.domain.models import Device, Reading, ReadingKind

REGION = "us-east-1"
SERIAL = "BENCH0001"
LINK_ID = "bench-link"  # the link the device authorizer vouches for (drs_core.services.linking)
SLOTS = ("Filter", "Cleaner")
USAGE_ROUTE = "/v1/devices/{serial}/usage"
FILTERS = [EventPattern.load(json.dumps(pattern)) for pattern in schema.REORDER_FUNCTION_FILTER_PATTERNS]
TIMED_RUNS = 300


class Context:
    function_name = "usage_ingestion"
    function_version = "$LATEST"
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:usage_ingestion"
    memory_limit_in_mb = 256
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/usage_ingestion"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def event(readings: list[dict[str, Any]], key: str | None = None) -> dict[str, Any]:
    """An HTTP API v2 event for the usage route, as the function receives it after the authorizer."""
    path = USAGE_ROUTE.replace("{serial}", SERIAL)
    headers = {"content-type": "application/json", "host": "api.example.com"}
    if key:
        headers["idempotency-key"] = key
    return {
        "version": "2.0",
        "routeKey": f"POST {USAGE_ROUTE}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "api.example.com",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7"},
            "requestId": "bench",
            "routeKey": f"POST {USAGE_ROUTE}",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0,
            "authorizer": {"lambda": {"serial": SERIAL, "linkId": LINK_ID}},
        },
        "pathParameters": {"serial": SERIAL},
        "body": json.dumps({"readings": readings}),
        "isBase64Encoded": False,
    }


class Calls:
    """DynamoDB operations sent by one client, by name."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-call.dynamodb.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1

    def take(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


class Stream:
    """The state table's stream records since the last read (in-process moto needs its endpoint named)."""

    def __init__(self, table: str) -> None:
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self._client = boto3.client(
            "dynamodbstreams",
            region_name=REGION,
            endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com",
        )
        shard = self._client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self._iterator = self._client.get_shard_iterator(
            StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST"
        )["ShardIterator"]

    def read(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        while self._iterator:
            answer = self._client.get_records(ShardIterator=self._iterator)
            self._iterator = answer.get("NextShardIterator")
            if not answer["Records"]:
                break
            for raw in answer["Records"]:
                change = dict(raw["dynamodb"])
                change.pop("ApproximateCreationDateTime", None)
                records.append({"eventName": raw["eventName"], "dynamodb": change})
        return records


@dataclass(frozen=True)
class IngestionResult:
    """The tables' rows, and the figures the summary quotes."""

    call_rows: list[list[object]]
    time_rows: list[list[object]]
    writes_per_reading: float  # state writes per slot reading over a day (target 1)
    reads_per_reading: float  # target 0
    reorder_invocations_per_reading: float  # over a day of readings that need no order (target 0)
    handler_s: float  # the handler's median for a 2-reading request
    bare_update_s: float  # a bare UpdateItem's median on the same backend


@cache
def measure() -> IngestionResult:
    """Run both measurements (cached: the summary reuses this run's figures)."""
    previous = default_clock()
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    use_clock(clock)
    try:
        # The handler prints an EMF document per request (CloudWatch reads stdout): not for the tables.
        with mock_aws(), open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            _environment()
            handler = _import_handler()
            call_rows, day = _tables_of_calls(handler, clock)
            time_rows, timings = _table_of_time(handler, clock)
    finally:
        use_clock(previous)
        dependencies.reset()
    return IngestionResult(
        call_rows=call_rows,
        time_rows=time_rows,
        writes_per_reading=day["writes"] / day["readings"],
        reads_per_reading=day["reads"] / day["readings"],
        reorder_invocations_per_reading=day["invocations"] / day["readings"],
        handler_s=timings["two slots"],
        bare_update_s=timings["bare"],
    )


def run() -> None:
    result = measure()
    print_table(
        "Per slot reading (2-slot device, hourly readings; targets: 1 write, 0 reads, 0 reorder invocations "
        "unless due)",
        [
            "profile",
            "readings",
            "state writes / reading",
            "reads / reading",
            "idempotency writes / request",
            "stream records",
            "reorder invocations / reading",
        ],
        result.call_rows,
    )
    print_table(
        f"Usage handler warm time per request ({TIMED_RUNS} runs each, in-process moto: most of the hot-path "
        "write's time is moto parsing its condition)",
        ["call", "median ms", "p90 ms", "x bare UpdateItem", "x bare, per write", "handler overhead ms"],
        result.time_rows,
    )


def _environment() -> None:
    os.environ.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        STATE_TABLE="state",
        IDEMPOTENCY_TABLE="idempotency",
    )
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(**schema.state_table_kwargs("state"))
    dynamodb.create_table(**schema.idempotency_table_kwargs("idempotency"))
    dependencies.reset()
    repository = StateRepository("state", dynamodb=dynamodb)
    repository.put_device(Device(SERIAL, "BenchModel", link_id=LINK_ID))
    for slot in SLOTS:
        repository.upsert_subscription(
            SERIAL, slot, subscribed=True, asin="B0BENCH", quantity=100, unit="count", link_id=LINK_ID
        )


def _import_handler() -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    import importlib

    return importlib.import_module("functions.usage_ingestion.handler").handler


def _post(
    handler: Callable, clock: ManualClock, amounts: dict[str, float], *, key: str | None = None
) -> None:
    now = to_iso(clock.now())
    readings = [
        {"slotId": slot, "observedAt": now, "remainingQuantity": level} for slot, level in amounts.items()
    ]
    answer = handler(event(readings, key), Context())
    if answer["statusCode"] != 202:
        raise RuntimeError(f"usage answered {answer['statusCode']}: {answer['body']}")


def _tables_of_calls(handler: Callable, clock: ManualClock) -> tuple[list[list[object]], Counter[str]]:
    calls = Calls(dependencies.usage_store().client)
    stream = Stream("state")
    levels = {"Filter": 100.0, "Cleaner": 100.0}
    _post(handler, clock, levels)  # the first reading measures the slots
    calls.take()
    stream.read()
    rows: list[list[object]] = []
    day = Counter[str]()

    def profile(name: str, hours: int, *, keyed: bool, drop: float) -> None:
        invocations = records = 0
        for _ in range(hours):
            clock.advance(3600)
            for slot in levels:
                levels[slot] = round(levels[slot] - drop, 6)
            _post(handler, clock, levels, key=f"{clock.now().timestamp()}" if keyed else None)
            produced = stream.read()
            records += len(produced)
            invocations += sum(1 for record in produced if any(f.matches_event(record) for f in FILTERS))
        counts = calls.take()
        readings = hours * len(levels)
        # With a key, the idempotency record costs a PutItem and an UpdateItem per request.
        idempotency_writes = counts["PutItem"] + (hours if keyed else 0)
        state_writes = counts["UpdateItem"] - (hours if keyed else 0)
        reads = counts["GetItem"] + counts["Query"] + counts["Scan"] + counts["BatchGetItem"]
        day.update(readings=readings, writes=state_writes, reads=reads, invocations=invocations)
        row = [name, readings, state_writes / readings, reads / readings, idempotency_writes / hours]
        rows.append([*row, records, invocations / readings])

    # Hours 1-23 of the slots' first day: steady state, 0.1 unit an hour, far above the reorder point.
    profile("steady state, no Idempotency-Key", 20, keyed=False, drop=0.1)
    profile("steady state, Idempotency-Key", 3, keyed=True, drop=0.1)
    # Hour 24 closes the slots' first day: the rate update (a refused blind write, then the exact one).
    # The rate becomes 2.4 a day, the reorder point 2.4 x 9 days = 21.6: still far below the 97.6 left.
    profile("the reading that closes a slot's day", 1, keyed=False, drop=0.1)
    average = ["average over the day (24 readings a slot)", day["readings"]]
    rows.append([*average, day["writes"] / day["readings"], day["reads"] / day["readings"], "-", "-", "-"])
    whole_day = Counter(day)
    # Hour 25: both slots fall from 97.6 to 17.6, crossing their reorder point: once per need.
    profile("the reading that crosses the point", 1, keyed=False, drop=80)
    return rows, whole_day


def _table_of_time(handler: Callable, clock: ManualClock) -> tuple[list[list[object]], dict[str, float]]:
    dependencies.reset()  # a client without the counting hook
    client = boto3.client("dynamodb", region_name=REGION)
    key = {"pk": {"S": schema.device_pk("BASELINE")}, "sk": {"S": "SLOT#Filter"}}
    client.put_item(TableName="state", Item={**key, "remainingQuantity": {"N": "1000000"}})
    levels = {"Filter": 1_000_000.0, "Cleaner": 1_000_000.0}
    _post(handler, clock, levels)
    store = dependencies.usage_store()

    def request(slots: tuple[str, ...]) -> Callable[[], None]:
        def call() -> None:
            clock.advance(1)
            for slot in slots:
                levels[slot] -= 0.001
            _post(handler, clock, {slot: levels[slot] for slot in slots})

        return call

    def hot_write() -> None:
        clock.advance(1)
        levels["Filter"] -= 0.001
        reading = Reading("Filter", clock.now(), ReadingKind.REMAINING, levels["Filter"])
        if not store.try_fast(SERIAL, "Filter", reading, clock.now()).accepted:
            raise RuntimeError("a steady-state reading must take the blind write")

    def bare() -> None:
        client.update_item(
            TableName="state",
            Key=key,
            UpdateExpression="SET #r = #r - :d",
            ExpressionAttributeNames={"#r": "remainingQuantity"},
            ExpressionAttributeValues={":d": {"N": "0.001"}},
        )

    baseline = time_calls(bare, runs=TIMED_RUNS)
    hot = time_calls(hot_write, runs=TIMED_RUNS)
    one = time_calls(request(("Filter",)), runs=TIMED_RUNS)
    two = time_calls(request(SLOTS), runs=TIMED_RUNS)
    measured = [
        ("bare UpdateItem: SET remaining = remaining - :d", baseline, 1, False),
        ("the hot-path UpdateItem alone (UsageStore.try_fast)", hot, 1, False),
        ("handler, 1 reading", one, 1, True),
        ("handler, 2 readings (2 slots)", two, 2, True),
    ]
    rows: list[list[object]] = [
        [
            name,
            ms(timing.median_s),
            ms(timing.p90_s),
            timing.median_s / baseline.median_s,
            timing.median_s / baseline.median_s / writes,
            ms(timing.median_s - writes * hot.median_s) if handler_row else "-",
        ]
        for name, timing, writes, handler_row in measured
    ]
    return rows, {"two slots": two.median_s, "bare": baseline.median_s}
