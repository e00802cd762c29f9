"""Reporting end to end: planner and worker handlers over moto (state table with the report index,
tokens, KMS, SQS, idempotency) and the DRS + LWA simulator on loopback, on one manual clock.

Devices are linked the way the linking service does it (simulator consent → our LwaClient → vault →
repository), usage is written as the usage path writes it, and SQS redelivery is simulated by handing
the failed records of a partial batch response back to the worker after the visibility timeout.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest

from drs_core import dependencies, schema
from drs_core.adapters.drs_client import DrsClient
from drs_core.adapters.items import Attr
from drs_core.adapters.report_queue import ReportQueue
from drs_core.adapters.report_store import ReportStore
from drs_core.clock import ManualClock, parse_iso, to_iso
from drs_core.domain.models import Device, DeviceStatus, OrderState, SlotOrder
from drs_core.errors import ReportJobIncomplete
from drs_core.services.reporting import ReportJob, SlotUpkeep, plan_reports, run_job
from sandbox.simulator import SimulatorServer
from sandbox.simulator.control import SimulatorControl
from sandbox.simulator.records import Product

REGION = "us-east-1"
SIM_CLIENT_ID = "amzn1.application-oa2-client.sandbox"
SIM_CLIENT_SECRET = "sandbox-secret"
MODEL = "WaterFilterPro"
FILTER = Product("B00FILTER1", 2, "count")
CLEANER = Product("B00CLEAN01", 1.5, "liter")
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
# The visibility timeout of the report queue (infra/reporting.py): when SQS hands a failed job back.
REDELIVERY_SECONDS = 720

# The worker timestamps its EMF records with the plan's time, which is weeks from the real clock here.
pytestmark = pytest.mark.filterwarnings("ignore:This metric doesn't meet the requirements")


class Context:
    """A Lambda context with the report worker's two minutes (the shared fixture has 30 s)."""

    function_name = "report-worker"
    function_version = "$LATEST"
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:report-worker"
    memory_limit_in_mb = 256
    aws_request_id = "00000000-0000-0000-0000-000000000001"
    log_group_name = "/aws/lambda/report-worker"
    log_stream_name = "2026/01/01/[$LATEST]0"

    def __init__(self, remaining_ms: int = 120_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def _import_fresh(name: str) -> ModuleType:
    module = sys.modules.get(name)
    return importlib.reload(module) if module is not None else importlib.import_module(name)


@dataclass
class Reporting:
    """The two handlers, the queue between them, the simulator and helpers to arrange device life."""

    planner: ModuleType
    worker: ModuleType
    control: SimulatorControl
    clock: ManualClock
    aws: Any
    sqs: Any
    queue_url: str
    queue_arn: str

    # --- arranging -------------------------------------------------------------------------------

    def link(self, serial: str, slots: dict[str, Product | None], *, is_test: bool = True) -> str:
        """Consent at the simulator, code exchange, tokens in the vault, device and slots stored."""
        customer = self.control.create_customer()["customerId"]
        code, redirect_uri = self.control.authorize(
            customer,
            model_id=MODEL,
            serial=serial,
            slots={slot: (product.to_json() if product else None) for slot, product in slots.items()},
            is_test_device=is_test,
        )
        dependencies.token_vault().store(serial, dependencies.lwa_client().exchange_code(code, redirect_uri))
        repository = dependencies.repository()
        repository.link_device(
            Device(serial=serial, model_id=MODEL, is_test_device=is_test, linked_at=self.clock.now()),
            owner_id=customer,
        )
        for slot, product in slots.items():
            repository.upsert_subscription(
                serial,
                slot,
                subscribed=product is not None,
                asin=product.asin if product else None,
                quantity=product.quantity if product else None,
                unit=product.unit if product else None,
            )
        return customer

    def use(self, serial: str, slot: str, *, remaining: float, rate: float | None = 1.0) -> None:
        """A reading that consumed something, as the usage path records it."""
        now = to_iso(self.clock.now())
        self._slot_update(
            serial,
            slot,
            {"remainingQuantity": {"N": str(remaining)}, "lastUseAt": {"S": now}, "lastReadingAt": {"S": now}}
            | ({"dailyConsumption": {"N": str(rate)}} if rate is not None else {}),
        )

    def read(self, serial: str, slot: str, *, remaining: float) -> None:
        """A reading with no consumption."""
        now = to_iso(self.clock.now())
        self._slot_update(
            serial, slot, {"remainingQuantity": {"N": str(remaining)}, "lastReadingAt": {"S": now}}
        )

    def _slot_update(self, serial: str, slot: str, values: dict[str, Any]) -> None:
        names = {f"#a{i}": name for i, name in enumerate(values)}
        self.aws.dynamodb.update_item(
            TableName=self.aws.state_table,
            Key={k: {"S": v} for k, v in schema.slot_key(serial, slot).items()},
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":v{i}": value for i, value in enumerate(values.values())},
        )

    # --- running ---------------------------------------------------------------------------------

    def plan(self, scheduled_at: datetime) -> dict[str, Any]:
        self.clock.set(max(self.clock.now(), scheduled_at + timedelta(seconds=30)))
        return self.planner.handler({"scheduledTime": to_iso(scheduled_at)}, Context())

    def drain(self) -> list[dict[str, Any]]:
        """Everything queued, as the records of Lambda's SQS event (taken off the queue)."""
        records = []
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
            )
            messages = answer.get("Messages", [])
            if not messages:
                return records
            for message in messages:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                records.append(
                    {
                        "messageId": message["MessageId"],
                        "receiptHandle": message["ReceiptHandle"],
                        "body": message["Body"],
                        "attributes": message.get("Attributes", {}),
                        "messageAttributes": {},
                        "md5OfBody": message["MD5OfBody"],
                        "eventSource": "aws:sqs",
                        "eventSourceARN": self.queue_arn,
                        "awsRegion": REGION,
                    }
                )

    def work(self, records: list[dict[str, Any]], context: Context | None = None) -> list[dict[str, Any]]:
        """One worker invocation per record (batch size 1); the records whose job failed."""
        failed = []
        for record in records:
            answer = self.worker.handler({"Records": [record]}, context or Context())
            failed_ids = {entry["itemIdentifier"] for entry in answer["batchItemFailures"]}
            failed += [r for r in [record] if r["messageId"] in failed_ids]
        return failed

    def work_until_done(self, records: list[dict[str, Any]], *, attempts: int = 10) -> int:
        """Deliver, then redeliver what failed after the visibility timeout; how many deliveries it took."""
        for attempt in range(1, attempts + 1):
            records = self.work(records)
            if not records:
                return attempt
            self.clock.advance(REDELIVERY_SECONDS)
        raise AssertionError(f"{len(records)} job(s) still failing after {attempts} deliveries")

    def run_hour(self, scheduled_at: datetime) -> None:
        self.plan(scheduled_at)
        self.work_until_done(self.drain())

    def run_day(self, day_start: datetime) -> None:
        for hour in range(24):
            self.run_hour(day_start + timedelta(hours=hour))

    # --- observing -------------------------------------------------------------------------------

    def successes(self, operation: str) -> list[dict[str, Any]]:
        return [call for call in self.control.calls(operation) if call["status"] == 200]

    def per_day(self, operation: str, key: Callable[[dict[str, Any]], Any]) -> Counter:
        return Counter((call["at"][:10], key(call)) for call in self.successes(operation))


@pytest.fixture
def simulator(clock: ManualClock) -> Iterator[tuple[SimulatorServer, SimulatorControl]]:
    with SimulatorServer(
        host="127.0.0.1", port=0, client_id=SIM_CLIENT_ID, client_secret=SIM_CLIENT_SECRET, clock=clock
    ) as server:
        yield server, SimulatorControl(server.url, timeout=5.0)


@pytest.fixture
def reporting(aws, clock, simulator, monkeypatch) -> Reporting:
    server, control = simulator
    clock.set(DAY0)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="report-jobs")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for name, value in {
        "DRS_ENDPOINT": server.url,
        "LWA_ENDPOINT": server.url,
        "REPORT_QUEUE_URL": queue_url,
        # One attempt per call: retries here are SQS redeliveries, which is what these tests are about.
        "HTTP_MAX_ATTEMPTS": "1",
        "HTTP_READ_TIMEOUT": "2",
        "HTTP_MAX_TOTAL_SECONDS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    dependencies.reset()
    return Reporting(
        planner=_import_fresh("functions.report_planner.handler"),
        worker=_import_fresh("functions.report_worker.handler"),
        control=control,
        clock=clock,
        aws=aws,
        sqs=sqs,
        queue_url=queue_url,
        queue_arn=queue_arn,
    )


def emf_records(output: str) -> list[dict[str, Any]]:
    """The EMF metric records printed to stdout."""
    records = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            records.append(json.loads(line))
    return records


def metric_sums_by_day(output: str) -> Counter:
    """Sum of each metric per UTC day of its EMF timestamp."""
    sums: Counter = Counter()
    for record in emf_records(output):
        day = datetime.fromtimestamp(record["_aws"]["Timestamp"] / 1000, UTC).date().isoformat()
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = record[metric["Name"]]
                sums[(day, metric["Name"])] += sum(value) if isinstance(value, list) else value
    return sums


def job_for(serials: list[str], when: datetime) -> ReportJob:
    return ReportJob(when.date().isoformat(), f"{when.hour:02d}", when, tuple(serials))


def run_direct(job: ReportJob, drs: DrsClient | None = None) -> Any:
    """The worker's service without the handler (to inject a DRS client), as one job run."""
    return run_job(
        job,
        store=ReportStore("state"),
        repository=dependencies.repository(),
        vault=dependencies.token_vault(),
        drs=drs or dependencies.drs_client(),
        lease_seconds=150,
        upkeep=SlotUpkeep(),
    )


# --- over simulated days ----------------------------------------------------------------------------


def test_over_three_days_each_linked_device_reports_once_a_day_and_consumed_slots_are_reported(
    reporting: Reporting, capsys
):
    # Given linked devices: one using both subscribed slots every day, one whose subscribed slot is
    # idle after day 0 and whose unsubscribed slot is used on day 1 only, one never measured; and a
    # device needing re-authorisation and a deregistered one
    r = reporting
    r.link("SN-BUSY", {"Filter": FILTER, "Cleaner": CLEANER})
    r.link("SN-IDLE", {"Filter": FILTER, "Spare": None})
    r.link("SN-QUIET", {"Filter": FILTER})
    r.link("SN-REAUTH", {"Filter": FILTER})
    r.link("SN-GONE", {"Filter": FILTER})
    repository = dependencies.repository()
    repository.set_device_status("SN-REAUTH", DeviceStatus.REAUTH_REQUIRED)
    repository.set_device_status("SN-GONE", DeviceStatus.DEREGISTERED)
    r.read("SN-IDLE", "Filter", remaining=2)
    linked = {"SN-BUSY", "SN-IDLE", "SN-QUIET"}
    # When three days pass, readings landing at the start of each day, the schedule firing hourly
    for day in range(3):
        start = DAY0 + timedelta(days=day)
        r.clock.set(start + timedelta(seconds=10))
        r.use("SN-BUSY", "Filter", remaining=2 - 0.1 * (day + 1), rate=0.1)
        r.use("SN-BUSY", "Cleaner", remaining=1.5 - 0.2 * (day + 1), rate=0.2)
        if day == 0:
            r.use("SN-IDLE", "Filter", remaining=1.9, rate=0.1)
        if day == 1:
            r.use("SN-IDLE", "Spare", remaining=3, rate=None)
        r.run_day(start)
    days = [(DAY0 + timedelta(days=day)).date().isoformat() for day in range(3)]
    # Then every linked device got exactly one deviceStatus per day; the others none
    device_reports = r.per_day("deviceStatus", lambda call: call["serial"])
    assert device_reports == Counter({(day, serial): 1 for day in days for serial in linked})
    # And subscribed, measured slots were reported once a day (consumed or not), the unsubscribed slot
    # only on the day it was used, and the never-measured device's slot never
    slot_reports = r.per_day("slotStatus", lambda call: (call["serial"], call["slotId"]))
    expected = {(day, slot): 1 for day in days for slot in [("SN-BUSY", "Filter"), ("SN-BUSY", "Cleaner")]}
    expected |= {(day, ("SN-IDLE", "Filter")): 1 for day in days}
    expected[(days[1], ("SN-IDLE", "Spare"))] = 1
    assert slot_reports == Counter(expected)
    # And the slot bodies carry the figures: remaining, original, on hand, last use, a forecast date
    report = r.control.device("SN-BUSY")["slotReports"]["Cleaner"]
    assert report["remainingQuantityInUnit"] == pytest.approx(0.9)
    assert report["originalQuantityInUnit"] == 1.5
    assert report["totalQuantityOnHand"] == 0  # nothing shipped waits to be loaded
    # 0.9 left at 0.2 a day runs out in 4.5 days, within the 7-day lead time: replenish "now"
    assert parse_iso(report["expectedReplenishmentDate"]) == parse_iso(report["receivedAt"])
    assert report["lastUseDate"] == to_iso(DAY0 + timedelta(days=2, seconds=10))
    # And the daily visit refreshed the consumed slots' forecasts (the consumption service's write)
    busy_filter = r.aws.dynamodb.get_item(
        TableName=r.aws.state_table,
        Key={k: {"S": v} for k, v in schema.slot_key("SN-BUSY", "Filter").items()},
        ConsistentRead=True,
    )["Item"]
    assert Attr.REORDER_VERSION in busy_filter
    # And per day, the devices the planner found due equal the reports the worker sent
    sums = metric_sums_by_day(capsys.readouterr().out)
    for day in days:
        assert sums[(day, "ReportsDue")] == 3
        assert sums[(day, "ReportsSent")] == 3
        assert sums[(day, "DevicesNotLinked")] == 2
        assert sums[(day, "ReportsFailed")] == 0


def test_the_device_status_carries_the_latest_reading_as_last_activity(reporting: Reporting):
    # Given a device whose slots were read at two different times
    r = reporting
    r.link("SN-ACTIVE", {"Filter": FILTER, "Cleaner": CLEANER})
    r.clock.set(DAY0 + timedelta(minutes=5))
    r.read("SN-ACTIVE", "Filter", remaining=2)
    r.clock.set(DAY0 + timedelta(minutes=9))
    r.use("SN-ACTIVE", "Cleaner", remaining=1.2)
    latest = r.clock.now()
    # When its job runs
    run_direct(job_for(["SN-ACTIVE"], DAY0 + timedelta(minutes=10)))
    # Then DRS holds the later reading as the most recent activity
    reported = r.control.device("SN-ACTIVE")["lastDeviceStatus"]
    assert parse_iso(reported["mostRecentlyActiveDate"]) == latest
    assert len(r.successes("deviceStatus")) == 1


def test_the_daily_visit_infers_an_overdue_delivery_before_reporting_the_slot(reporting: Reporting):
    # Given a slot whose shipped order was due three days ago (DRS never says "delivered")
    r = reporting
    r.link("SN-SHIPPED", {"Filter": FILTER})
    r.use("SN-SHIPPED", "Filter", remaining=0.2, rate=0.1)
    dependencies.repository().set_slot_order(
        "SN-SHIPPED",
        "Filter",
        expected_states={OrderState.NONE},
        new=SlotOrder(
            state=OrderState.SHIPPED,
            instance_id="amzn1.dash.v2.o.SHIPPED1",
            estimated_delivery_date=r.clock.now() - timedelta(days=3),
        ),
    )
    r.sqs.send_message(QueueUrl=r.queue_url, MessageBody=job_for(["SN-SHIPPED"], r.clock.now()).to_json())
    # When the worker function visits the device
    assert r.work(r.drain()) == []
    # Then the order is taken as delivered and the slot reported
    assert dependencies.repository().get_slot("SN-SHIPPED", "Filter").order.state is OrderState.NONE
    assert len(r.successes("slotStatus")) == 1


# --- retries ----------------------------------------------------------------------------------------


def test_injected_500s_are_retried_by_redelivery_and_end_in_exactly_one_report(reporting: Reporting):
    # Given six linked devices in one job, each with a used subscribed slot, and DRS and LWA failing
    # 40 % of all calls with a 500
    r = reporting
    serials = [f"SN-FLAKY-{index}" for index in range(6)]
    for serial in serials:
        r.link(serial, {"Filter": FILTER})
        r.use(serial, "Filter", remaining=1.5, rate=0.2)
    r.control.set_fault(None, 0.4, status=500, seed=7)
    job = job_for(serials, r.clock.now())
    r.sqs.send_message(QueueUrl=r.queue_url, MessageBody=job.to_json())
    # When the job is delivered, and redelivered after each failure, until it succeeds
    deliveries = r.work_until_done(r.drain(), attempts=25)
    # Then faults did happen and forced redeliveries
    assert deliveries > 1
    assert any(call.get("fault") for call in r.control.calls())
    # And every device ended with exactly one accepted deviceStatus and one accepted slotStatus
    assert Counter(call["serial"] for call in r.successes("deviceStatus")) == Counter(
        dict.fromkeys(serials, 1)
    )
    assert Counter(call["serial"] for call in r.successes("slotStatus")) == Counter(dict.fromkeys(serials, 1))


def test_a_slot_fault_after_the_device_report_retries_the_slot_only(reporting: Reporting):
    # Given a device with a used slot, and slotStatus failing
    r = reporting
    r.link("SN-SLOTFAULT", {"Filter": FILTER})
    r.use("SN-SLOTFAULT", "Filter", remaining=1, rate=0.5)
    r.control.set_fault("slotStatus", 1.0, status=500)
    job = job_for(["SN-SLOTFAULT"], r.clock.now())
    r.sqs.send_message(QueueUrl=r.queue_url, MessageBody=job.to_json())
    records = r.drain()
    # When the first delivery fails, the fault clears, and SQS redelivers
    failed = r.work(records)
    assert failed == records
    r.control.set_fault("slotStatus", 0)
    r.clock.advance(REDELIVERY_SECONDS)
    assert r.work(failed) == []
    # Then the device was reported once (not again on the redelivery), the slot once
    assert len(r.successes("deviceStatus")) == 1
    assert len(r.successes("slotStatus")) == 1
    assert len(r.control.calls("deviceStatus")) == 1


def test_a_redelivered_job_after_success_calls_drs_no_more(reporting: Reporting):
    # Given a job that was reported in full
    r = reporting
    r.link("SN-TWICE", {"Filter": FILTER})
    r.use("SN-TWICE", "Filter", remaining=1, rate=0.5)
    job = job_for(["SN-TWICE"], r.clock.now())
    first = run_direct(job)
    calls = len(r.control.calls())
    # When SQS delivers the same job again later that day
    r.clock.advance(3600)
    second = run_direct(job)
    # Then nothing more reaches DRS, and the device counts as already reported
    assert first.drs_calls == 2 and second.drs_calls == 0
    assert (
        second.count(second.outcomes["SN-TWICE"]) == 1
        and second.outcomes["SN-TWICE"].value == "ReportsAlreadySent"
    )
    assert len(r.control.calls()) == calls


class RivalDuringCall(DrsClient):
    """A DRS client that, on its first deviceStatus call, lets a rival worker run the same job."""

    def __init__(self, endpoint: str, rival: Callable[[], None]) -> None:
        super().__init__(endpoint)
        self._rival: Callable[[], None] | None = rival

    def device_status(self, access_token: str, most_recently_active: datetime) -> None:
        if self._rival is not None:
            rival, self._rival = self._rival, None
            rival()
        super().device_status(access_token, most_recently_active)


def test_concurrent_workers_on_the_same_job_do_not_double_report(reporting: Reporting):
    # Given a job of two devices, delivered twice at once (SQS at-least-once): the second worker runs
    # while the first is inside its DRS call for the first device
    r = reporting
    for serial in ("SN-RACE-1", "SN-RACE-2"):
        r.link(serial, {"Filter": FILTER})
        r.use(serial, "Filter", remaining=1, rate=0.5)
    job = job_for(["SN-RACE-1", "SN-RACE-2"], r.clock.now())
    rival_outcomes: list[Any] = []

    def rival() -> None:
        try:
            run_direct(job)
        except ReportJobIncomplete as incomplete:
            rival_outcomes.append(incomplete.serials)

    # When the first worker runs, with the rival inside its first call
    first = run_direct(job, drs=RivalDuringCall(r.control.url, rival))
    # Then the rival found the first device leased and gave its job back for that device only; it
    # reported the second device, which the first worker then found done
    assert rival_outcomes == [("SN-RACE-1",)]
    assert first.outcomes["SN-RACE-2"].value == "ReportsAlreadySent"
    # And the rival's redelivery finds everything done: each device and slot reported exactly once
    r.clock.advance(REDELIVERY_SECONDS)
    again = run_direct(job)
    assert again.drs_calls == 0
    assert Counter(call["serial"] for call in r.successes("deviceStatus")) == {"SN-RACE-1": 1, "SN-RACE-2": 1}
    assert Counter(call["serial"] for call in r.successes("slotStatus")) == {"SN-RACE-1": 1, "SN-RACE-2": 1}


# --- skips, failures, time -----------------------------------------------------------------------


def test_a_device_whose_customer_revoked_access_is_skipped_counted_and_flagged(reporting: Reporting, capsys):
    # Given a linked device whose customer removed the maker in "Manage Login with Amazon"
    r = reporting
    customer = r.link("SN-REVOKED", {"Filter": FILTER})
    r.control.remove_maker(customer)
    r.clock.advance(2 * 3600)  # the cached access token has expired: a refresh is needed, and refused
    # When its job runs
    result = run_direct(job_for(["SN-REVOKED"], r.clock.now()))
    # Then it is skipped (not retried), counted, and the device now needs re-authorisation
    assert result.outcomes["SN-REVOKED"].value == "ReportsSkipped"
    assert dependencies.repository().get_device("SN-REVOKED").status is DeviceStatus.REAUTH_REQUIRED
    assert r.successes("deviceStatus") == []
    sums = metric_sums_by_day(capsys.readouterr().out)
    assert sums[(r.clock.now().date().isoformat(), "ReportsSkipped")] == 1


def test_a_device_unlinked_after_planning_is_skipped_without_a_drs_call(reporting: Reporting):
    # Given a job planned for a device that was deregistered before the worker's turn
    r = reporting
    r.link("SN-LATE-GONE", {"Filter": FILTER})
    dependencies.repository().set_device_status("SN-LATE-GONE", DeviceStatus.DEREGISTERED)
    # When the job runs
    result = run_direct(job_for(["SN-LATE-GONE"], r.clock.now()))
    # Then the device is skipped and DRS never hears of it
    assert result.outcomes["SN-LATE-GONE"].value == "ReportsSkipped"
    assert r.control.calls("deviceStatus") == []


def test_a_job_short_of_time_starts_no_device_and_is_retried_whole(reporting: Reporting):
    # Given a queued job, and an invocation with only 30 s left
    r = reporting
    r.link("SN-SLOW", {"Filter": FILTER})
    r.sqs.send_message(QueueUrl=r.queue_url, MessageBody=job_for(["SN-SLOW"], r.clock.now()).to_json())
    records = r.drain()
    # When the worker gets it
    failed = r.work(records, Context(remaining_ms=30_000))
    # Then it calls nobody and hands the job back; with time, the redelivery reports the device
    assert failed == records
    assert r.control.calls("deviceStatus") == []
    assert r.work(failed) == []
    assert len(r.successes("deviceStatus")) == 1


def test_a_malformed_job_fails_alone(reporting: Reporting):
    # Given a batch with a garbage message next to a good job
    r = reporting
    r.link("SN-GOOD", {"Filter": FILTER})
    r.sqs.send_message(QueueUrl=r.queue_url, MessageBody="not a job")
    r.sqs.send_message(QueueUrl=r.queue_url, MessageBody=job_for(["SN-GOOD"], r.clock.now()).to_json())
    records = r.drain()
    # When both are delivered in one event
    answer = r.worker.handler({"Records": records}, Context())
    # Then only the garbage fails (to reach the DLQ after its receives); the good job is done
    bad = next(record for record in records if record["body"] == "not a job")
    assert answer == {"batchItemFailures": [{"itemIdentifier": bad["messageId"]}]}
    assert len(r.successes("deviceStatus")) == 1


# --- planner ----------------------------------------------------------------------------------------


def serials_in_bucket(bucket: str, count: int, prefix: str) -> list[str]:
    found, index = [], 0
    while len(found) < count:
        serial = f"{prefix}-{index}"
        if schema.report_bucket(serial) == bucket:
            found.append(serial)
        index += 1
    return found


def test_the_planner_pages_its_bucket_batches_jobs_and_skips_unlinked_devices(reporting: Reporting):
    # Given 23 devices in bucket 05 (two deregistered), and devices of other buckets
    r = reporting
    repository = dependencies.repository()
    in_bucket = serials_in_bucket("05", 23, "SN-B")
    others = [serial for serial in (f"SN-O-{i}" for i in range(40)) if schema.report_bucket(serial) != "05"]
    for serial in in_bucket + others:
        repository.put_device(Device(serial=serial, model_id=MODEL))
    for serial in in_bucket[:2]:
        repository.set_device_status(serial, DeviceStatus.DEREGISTERED)
    # When the 05:00 plan runs with jobs of 2 and index pages of 4
    planned_at = DAY0 + timedelta(hours=5)
    result = plan_reports(
        planned_at,
        store=ReportStore(r.aws.state_table),
        queue=ReportQueue(r.queue_url),
        job_size=2,
        page_size=4,
    )
    # Then the 21 linked devices of the bucket, and only they, are in 11 jobs for that day and hour
    jobs = [ReportJob.from_json(record["body"]) for record in r.drain()]
    assert (result.due, result.not_linked, result.jobs) == (21, 2, 11)
    assert len(jobs) == 11 and all(len(job.serials) <= 2 for job in jobs)
    assert sorted(serial for job in jobs for serial in job.serials) == sorted(in_bucket[2:])
    assert {(job.day, job.bucket, job.planned_at) for job in jobs} == {("2026-01-01", "05", planned_at)}


def test_the_planner_plans_a_bucket_once_per_day_whatever_the_schedule_repeats(reporting: Reporting):
    # Given a linked device in bucket 09
    r = reporting
    (serial,) = serials_in_bucket("09", 1, "SN-ONCE")
    dependencies.repository().put_device(Device(serial=serial, model_id=MODEL))
    scheduled = DAY0 + timedelta(hours=9)
    # When the schedule delivers the 09:00 run twice, and the next day's 09:00 run comes
    first = r.plan(scheduled)
    duplicate = r.plan(scheduled)
    queued_first_day = r.drain()
    next_day = r.plan(scheduled + timedelta(days=1))
    # Then the duplicate enqueued nothing more; the next day is planned afresh
    assert first == duplicate == {"day": "2026-01-01", "bucket": "09", "due": 1, "jobs": 1}
    assert len(queued_first_day) == 1
    assert next_day["day"] == "2026-01-02" and len(r.drain()) == 1


def test_a_planner_run_without_a_scheduled_time_plans_the_current_hour(reporting: Reporting):
    # Given the clock at 13:40
    r = reporting
    r.clock.set(DAY0 + timedelta(hours=13, minutes=40))
    # When the planner is invoked by hand with an empty event
    answer = r.planner.handler({}, Context())
    # Then it plans bucket 13 of that day
    assert (answer["day"], answer["bucket"]) == ("2026-01-01", "13")


def test_a_planner_run_with_an_unreadable_scheduled_time_fails_and_plans_nothing(reporting: Reporting):
    # Given a schedule input whose time is not a time
    r = reporting
    # When the planner is invoked with it, or with an input that is not an object,
    # Then the invocation fails naming what is wrong (Scheduler retries it)
    with pytest.raises(ValueError, match="scheduledTime 'tomorrow-ish' is not an ISO 8601 time"):
        r.planner.handler({"scheduledTime": "tomorrow-ish"}, Context())
    with pytest.raises(ValueError, match="scheduledTime 1767258000 is not an ISO 8601 time"):
        r.planner.handler({"scheduledTime": 1767258000}, Context())
    with pytest.raises(ValueError, match="the input is a list"):
        r.planner.handler(["2026-01-01T09:00:00Z"], Context())
    # And no job was queued
    assert r.drain() == []
