"""Daily reporting: DRS calls per device-day, and the planner at 100 k and 1 M devices.

1. **Calls per device-day.** Devices linked to the DRS + LWA simulator, moto for AWS, one manual clock;
   three simulated days, the planner run for every hour and every job handed to the worker (failed jobs
   redelivered). Profiles: every slot used every day (docs/architecture.md §6), one of two slots idle, and the
   first profile again with 10 % of DRS and LWA calls failing with a 500. Target: one ``deviceStatus``
   plus the consumed slots per device-day; subscribed slots that were idle still get their daily
   ``slotStatus`` (DRS's "at least daily per slot"), and a retry never repeats an accepted report.
2. **Planner scale.** The real planner (``plan_reports``, ``ReportStore``, ``ReportQueue``) over a fake
   DynamoDB client that serves the report index as DynamoDB does (1 MB pages, keys + status) and a fake
   SQS client that only counts: all 24 buckets of a day, i.e. every device once. Time without tracing,
   then peak traced memory (``tracemalloc``) in a second run; memory must not grow with the devices.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import tracemalloc
import warnings
from array import array
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3
from moto import mock_aws

from bench.table import print_table
from drs_core import dependencies, schema
from drs_core.adapters.report_queue import ReportQueue
from drs_core.adapters.report_store import ReportStore
from drs_core.clock import ManualClock, default_clock, to_iso, use_clock
from drs_core.domain.models import Device
from drs_core.errors import ReportJobIncomplete
from drs_core.observability import logger
from drs_core.services.reporting import ReportJob, default_upkeep, plan_reports, run_job
from sandbox.simulator import SimulatorServer
from sandbox.simulator.control import SimulatorControl

REGION = "us-east-1"
CLIENT_ID, SECRET = "amzn1.application-oa2-client.sandbox", "sandbox-secret"
DEVICES_PER_PROFILE = 16
DAYS = 3
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
PRODUCTS = {
    "Filter": {"asin": "B00FILTER1", "quantity": 2, "unit": "count"},
    "Cleaner": {"asin": "B00CLEAN01", "quantity": 1.5, "unit": "liter"},
}
PLANNER_SIZES = (100_000, 1_000_000)
# DynamoDB returns at most 1 MB per Query page (or ``Limit`` items); a report-index item is ~50 bytes.
PAGE_BYTES = 1_000_000
NOT_LINKED_EVERY = 33  # ~3 % of devices deregistered or awaiting re-authorisation


@dataclass(frozen=True)
class ReportingResult:
    """The tables' rows, and the figures the summary quotes (profile "both slots used daily")."""

    call_rows: list[list[object]]
    planner_rows: list[list[object]]
    drs_calls_per_device_day: float  # deviceStatus + slotStatus
    target_per_device_day: float  # 1 + the consumed slots
    repeated_reports: int  # over every profile, faults included (target 0)


@cache
def measure() -> ReportingResult:
    """Both measurements (cached: the summary reuses this run's figures)."""
    # The simulated days are in 2026-01: CloudWatch would drop EMF timestamps that old, and says so.
    warnings.filterwarnings("ignore", message="This metric doesn't meet the requirements")
    # The fault profile logs every retried report: a table, not thousands of log lines, is the output.
    level = logger.log_level
    logger.setLevel("CRITICAL")
    try:
        call_rows = _calls_rows()
        planner_rows = [_planner_row(devices) for devices in PLANNER_SIZES]
    finally:
        logger.setLevel(level)
    used = call_rows[0]  # "both slots used daily": name, device-days, deviceStatus, slotStatus, … target
    return ReportingResult(
        call_rows=call_rows,
        planner_rows=planner_rows,
        drs_calls_per_device_day=float(used[2]) + float(used[3]),
        target_per_device_day=float(used[6]),
        repeated_reports=sum(int(row[7]) for row in call_rows),
    )


def run() -> None:
    result = measure()
    print_table(
        "DRS calls per device-day (3 simulated days; target: 1 deviceStatus + the consumed slots)",
        [
            "profile",
            "device-days",
            "deviceStatus",
            "slotStatus",
            "consumed slots",
            "idle subscribed",
            "target",
            "repeated reports",
            "failed attempts",
            "redeliveries",
        ],
        result.call_rows,
    )
    print_table(
        "Planner over a full day of buckets (fake report index paging like DynamoDB, counting SQS)",
        ["devices", "jobs", "SendMessageBatch calls", "index pages", "time (s)", "µs / device", "peak MiB"],
        result.planner_rows,
    )


# --- 1. calls per device-day -----------------------------------------------------------------------


def _calls_rows() -> list[list[object]]:
    profiles = [("both slots used daily", False, 0.0), ("one slot idle", True, 0.0)]
    profiles.append(("both used, 10 % of calls fail (500)", False, 0.1))
    return [_calls_row(number, name, idle, faults) for number, (name, idle, faults) in enumerate(profiles)]


def _calls_row(number: int, name: str, idle_cleaner: bool, fault_rate: float) -> list[object]:
    previous = default_clock()
    clock = ManualClock(DAY0)
    use_clock(clock)
    try:
        with (
            mock_aws(),
            SimulatorServer(port=0, client_id=CLIENT_ID, client_secret=SECRET, clock=clock) as server,
        ):
            world = _World(server.url, clock)
            serials = [f"SN-P{number}-{index:03d}" for index in range(DEVICES_PER_PROFILE)]
            for serial in serials:
                world.link(serial)
            if fault_rate:
                world.control.set_fault(None, fault_rate, status=500, seed=3)
            consumed = 0
            for day in range(DAYS):
                start = DAY0 + timedelta(days=day)
                clock.set(start + timedelta(seconds=10))
                for serial in serials:
                    world.use(serial, "Filter", day)
                    consumed += 1
                    if idle_cleaner and day > 0:
                        world.read(serial, "Cleaner")
                    else:
                        world.use(serial, "Cleaner", day)
                        consumed += 1
                for hour in range(24):
                    world.run_hour(start + timedelta(hours=hour))
            calls = world.control.calls()
    finally:
        use_clock(previous)
    accepted = [call for call in calls if call["status"] == 200]
    device_days = DEVICES_PER_PROFILE * DAYS
    device_status = [call for call in accepted if call["operation"] == "deviceStatus"]
    slot_status = [call for call in accepted if call["operation"] == "slotStatus"]
    per_day = Counter((c["at"][:10], c["serial"], c.get("slotId")) for c in device_status + slot_status)
    idle = device_days * 2 - consumed
    return [
        name,
        device_days,
        len(device_status) / device_days,
        len(slot_status) / device_days,
        consumed / device_days,
        idle / device_days,
        1 + consumed / device_days,
        sum(count - 1 for count in per_day.values()),
        sum(1 for call in calls if call.get("fault")),
        world.redeliveries,
    ]


class _World:
    """moto tables, tokens, a queue; the planner and worker services; the simulator's customers."""

    def __init__(self, url: str, clock: ManualClock) -> None:
        os.environ.update(
            {
                "AWS_DEFAULT_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "STATE_TABLE": "state",
                "TOKENS_TABLE": "tokens",
                "LWA_CLIENT_ID": CLIENT_ID,
                "LWA_CLIENT_SECRET_NAME": "drs/lwa-client-secret",
                "DRS_ENDPOINT": url,
                "LWA_ENDPOINT": url,
                "HTTP_MAX_ATTEMPTS": "1",
            }
        )
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**schema.state_table_kwargs("state"))
        dynamodb.create_table(**schema.tokens_table_kwargs("tokens"))
        kms_key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["KeyId"]
        os.environ["TOKENS_KMS_KEY_ID"] = kms_key
        boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="drs/lwa-client-secret", SecretString=SECRET
        )
        sqs = boto3.client("sqs", region_name=REGION)
        self.queue_url = sqs.create_queue(QueueName="report-jobs")["QueueUrl"]
        self.sqs, self.dynamodb, self.clock = sqs, dynamodb, clock
        dependencies.reset()
        self.control = SimulatorControl(url)
        self.store = ReportStore("state", dynamodb=dynamodb)
        self.queue = ReportQueue(self.queue_url, sqs=sqs)
        self.redeliveries = 0

    def link(self, serial: str) -> None:
        customer = self.control.create_customer()["customerId"]
        code, redirect = self.control.authorize(customer, model_id="Bench", serial=serial, slots=PRODUCTS)
        dependencies.token_vault().store(serial, dependencies.lwa_client().exchange_code(code, redirect))
        repository = dependencies.repository()
        repository.link_device(
            Device(serial=serial, model_id="Bench", linked_at=self.clock.now()), owner_id=customer
        )
        for slot, product in PRODUCTS.items():
            repository.upsert_subscription(
                serial,
                slot,
                subscribed=True,
                asin=product["asin"],
                quantity=product["quantity"],
                unit=product["unit"],
            )

    def use(self, serial: str, slot: str, day: int) -> None:
        now = to_iso(self.clock.now())
        self._update(serial, slot, remainingQuantity={"N": str(1.0 - 0.1 * day)}, lastUseAt={"S": now})

    def read(self, serial: str, slot: str) -> None:
        self._update(serial, slot)

    def _update(self, serial: str, slot: str, **values: dict[str, str]) -> None:
        values["lastReadingAt"] = {"S": to_iso(self.clock.now())}
        values.setdefault("dailyConsumption", {"N": "0.1"})
        self.dynamodb.update_item(
            TableName="state",
            Key={k: {"S": v} for k, v in schema.slot_key(serial, slot).items()},
            UpdateExpression="SET " + ", ".join(f"#{name} = :{name}" for name in values),
            ExpressionAttributeNames={f"#{name}": name for name in values},
            ExpressionAttributeValues={f":{name}": value for name, value in values.items()},
        )

    def run_hour(self, scheduled_at: datetime) -> None:
        self.clock.set(scheduled_at + timedelta(seconds=30))
        with contextlib.redirect_stdout(io.StringIO()):
            plan_reports(scheduled_at, store=self.store, queue=self.queue)
            pending = self._drain()
            while pending:
                pending = [job for job in pending if not self._work(job)]
                if pending:
                    self.redeliveries += len(pending)
                    self.clock.advance(720)  # the queue's visibility timeout

    def _drain(self) -> list[ReportJob]:
        jobs = []
        while messages := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in messages:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                jobs.append(ReportJob.from_json(message["Body"]))
        return jobs

    def _work(self, job: ReportJob) -> bool:
        repository = dependencies.repository()
        try:
            run_job(
                job,
                store=self.store,
                repository=repository,
                vault=dependencies.token_vault(),
                drs=dependencies.drs_client(),
                lease_seconds=150,
                upkeep=default_upkeep(repository, dependencies.usage_store()),
            )
        except ReportJobIncomplete:
            return False
        return True


# --- 2. planner scale ------------------------------------------------------------------------------


class _FakeReportIndex:
    """The ``report`` GSI as a DynamoDB client's ``query`` answers it: one bucket, sorted by ``pk``, in
    pages of at most 1 MB. It keeps only device numbers per bucket (4 bytes each, built up front)."""

    def __init__(self, devices: int) -> None:
        self.buckets: dict[str, array] = {f"{hour:02d}": array("I") for hour in range(schema.REPORT_BUCKETS)}
        for number in range(devices):
            self.buckets[schema.report_bucket(_serial(number))].append(number)
        self.pages = 0

    def query(self, **kwargs: Any) -> dict[str, Any]:
        bucket = kwargs["ExpressionAttributeValues"][":bucket"]["S"]
        numbers = self.buckets[bucket]
        limit = kwargs.get("Limit", len(numbers))
        start = 0
        if "ExclusiveStartKey" in kwargs:
            last = int(schema.serial_from_pk(kwargs["ExclusiveStartKey"][schema.STATE_PK]["S"])[2:])
            start = bisect_right(numbers, last)
        items, size = [], 0
        for position in range(start, min(start + limit, len(numbers))):
            number = numbers[position]
            item = {
                schema.STATE_PK: {"S": schema.device_pk(_serial(number))},
                "status": {"S": "DEREGISTERED" if number % NOT_LINKED_EVERY == 0 else "LINKED"},
            }
            size += 50
            items.append(item)
            if size >= PAGE_BYTES:
                break
        self.pages += 1
        answer: dict[str, Any] = {"Items": items, "Count": len(items)}
        if start + len(items) < len(numbers):
            last_pk = items[-1][schema.STATE_PK]
            answer["LastEvaluatedKey"] = {
                schema.STATE_PK: last_pk,
                schema.STATE_SK: {"S": schema.DEVICE_SK},
                schema.REPORT_INDEX_PK: {"S": bucket},
            }
        return answer


class _CountingSqs:
    """SendMessageBatch that keeps nothing but counts."""

    def __init__(self) -> None:
        self.calls = 0
        self.messages = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.calls += 1
        self.messages += len(Entries)
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries], "Failed": []}


def _serial(number: int) -> str:
    return f"SN{number:09d}"


def _plan_day(index: _FakeReportIndex) -> _CountingSqs:
    sqs = _CountingSqs()
    store, queue = ReportStore("state", dynamodb=index), ReportQueue("jobs", sqs=sqs)
    with contextlib.redirect_stdout(io.StringIO()):
        for hour in range(schema.REPORT_BUCKETS):
            plan_reports(DAY0 + timedelta(hours=hour), store=store, queue=queue)
    return sqs


def _planner_row(devices: int) -> list[object]:
    index = _FakeReportIndex(devices)
    started = time.perf_counter()
    sqs = _plan_day(index)
    elapsed = time.perf_counter() - started
    pages = index.pages
    tracemalloc.start()
    try:
        _plan_day(index)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return [f"{devices:,}", sqs.messages, sqs.calls, pages, elapsed, elapsed / devices * 1e6, peak / 2**20]
