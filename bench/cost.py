"""Cost per device-month, from what the whole system does when it runs (docs/architecture.md §6: ≤ $0.003).

The embedded system (the CDK template deployed into moto, every function, the gateway with its
authorizers and cache, the pumps, the schedules, the DRS + LWA simulator) runs a fleet for a few
simulated days with the profile of docs/architecture.md §6: two slots per device, a reading of both every hour
(one request), slots that cross their reorder point, Amazon shipping what was ordered. ``Meter``
(bench/metering.py) counts, per function: invocations and their billed milliseconds, AWS calls,
DynamoDB read units and the items written, KMS calls, DRS/LWA requests, log lines and bytes at INFO,
EMF metrics. Those are divided into three units: a usage request (the device authorizer + the usage
function), a reorder (the reorder function + the notifications of its order), a device-day (the report
worker; every device of the fleet is given a serial of one report bucket, so one job reports them all,
as jobs of 25 devices do at scale), then priced with ``PRICES`` (one table, us-east-1, arm64, list
prices) and scaled to a month of the profile. The report planner runs hourly whatever the fleet: its
runs are a per-stack cost, shared by ``FLEET`` devices (its SendMessageBatch calls go to the devices).

Assumptions (stated here, printed with the table): ``ORDERS_PER_SLOT_MONTH`` orders per slot a month
(generous: filters and cartridges last longer); DRS and LWA answer in ``EXTERNAL_CALL_MS`` from Lambda
(the simulator answers on loopback in ~1 ms, so that wait is added to the measured durations); Lambda
writes a ``platform.start`` and a ``platform.report`` line per invocation of a function whose system log
level (in the template) is INFO or DEBUG, none at WARN, the deployed default; API Gateway
writes one access-log line per request (the template's format, rendered with typical values);
CloudWatch Logs counts 26 bytes per event on top of the message. Not counted, being per stack, not per
device (≈ $0 over 1 M devices): KMS key-months, secret-months, alarms and dashboard, idle SQS polling by
the event source mappings; and SQS/DynamoDB's own KMS data-key calls (cached by those services).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from bench.metering import Meter, Usage
from bench.table import print_table

if TYPE_CHECKING:
    from sandbox.template import FunctionSpec

# ------------------------------------------------------------------------------ prices (one table)


@dataclass(frozen=True)
class Price:
    usd: float
    per: str
    source: str


# AWS list prices, us-east-1, on-demand, Lambda on arm64 (first tier of each). Sources: the public
# pricing pages named in ``source``.
PRICES: dict[str, Price] = {
    "api_request": Price(
        1.00 / 1e6, "request", "Amazon API Gateway pricing: HTTP APIs, $1.00 per million requests"
    ),
    "lambda_request": Price(0.20 / 1e6, "invocation", "AWS Lambda pricing: $0.20 per 1M requests"),
    "lambda_gb_second": Price(0.0000133334, "GB-s", "AWS Lambda pricing: Arm, $0.0000133334 per GB-second"),
    "dynamodb_write_unit": Price(
        0.625 / 1e6, "WRU", "Amazon DynamoDB pricing: on-demand, $0.625 per million write request units"
    ),
    "dynamodb_read_unit": Price(
        0.125 / 1e6, "RRU", "Amazon DynamoDB pricing: on-demand, $0.125 per million read request units"
    ),
    "dynamodb_storage": Price(0.25, "GB-month", "Amazon DynamoDB pricing: Standard table class storage"),
    "dynamodb_pitr": Price(0.20, "GB-month", "Amazon DynamoDB pricing: continuous backups (PITR)"),
    "dynamodb_stream_read": Price(
        0.0, "read", "Amazon DynamoDB pricing: stream reads by Lambda triggers are free"
    ),
    "sqs_request": Price(
        0.40 / 1e6, "request", "Amazon SQS pricing: standard queue, $0.40 per million requests"
    ),
    "sns_publish": Price(
        0.50 / 1e6, "publish", "Amazon SNS pricing: standard topic, $0.50 per million; SQS deliveries free"
    ),
    "kms_request": Price(0.03 / 1e4, "request", "AWS KMS pricing: $0.03 per 10,000 requests"),
    "logs_ingested": Price(0.50, "GB", "Amazon CloudWatch pricing: Logs, standard ingestion $0.50 per GB"),
    "logs_stored": Price(0.03, "GB-month", "Amazon CloudWatch pricing: Logs storage $0.03 per GB-month"),
    "metric_month": Price(
        0.30, "metric-month", "Amazon CloudWatch pricing: custom metrics, $0.30 per metric"
    ),
    "data_out": Price(0.09, "GB", "Amazon API Gateway pricing: data transfer out at EC2 rates, $0.09 per GB"),
}
TARGET_USD = 0.003
GB = 1024**3

# ------------------------------------------------------------------------------ the profile

REQUESTS_PER_DAY = 24  # docs/architecture.md §6: 24 readings a day of 2 slots, one request carrying both
SLOTS = 2
DAYS_PER_MONTH = 365.25 / 12
ORDERS_PER_SLOT_MONTH = 1.0
FLEET = 1_000_000  # devices sharing the per-metric charges
EXTERNAL_CALL_MS = 150.0
LOG_EVENT_OVERHEAD = 26
LOG_RETENTION_MONTHS = 1  # infra/functions.py LOG_RETENTION
# What Lambda writes around each invocation with the JSON log format at system log level INFO (AWS Lambda
# developer guide, "Log-level filtering"); at WARN it writes neither.
PLATFORM_LINES = (
    '{"time":"2026-01-01T00:00:00.000Z","type":"platform.start","record":{"requestId":'
    '"6d1a1a7b-6d4c-4b3c-9a57-0a0a0a0a0a0a","version":"$LATEST"}}',
    '{"time":"2026-01-01T00:00:00.012Z","type":"platform.report","record":{"requestId":'
    '"6d1a1a7b-6d4c-4b3c-9a57-0a0a0a0a0a0a","metrics":{"durationMs":11.52,"billedDurationMs":12,'
    '"memorySizeMB":256,"maxMemoryUsedMB":92},"status":"success"}}',
)
PLATFORM_BYTES = sum(len(line.encode()) for line in PLATFORM_LINES)
PLATFORM_EVENT_BYTES = PLATFORM_BYTES + LOG_EVENT_OVERHEAD * len(PLATFORM_LINES)  # as CloudWatch counts them
# Typical values of the access log's $context variables (the format itself comes from the template).
ACCESS_LOG_VALUES = {
    "requestId": "Xa1bCdEfIAMEbQw=",
    "requestTime": "01/Jan/2026:00:00:00 +0000",
    "identity.sourceIp": "203.0.113.7",
    "routeKey": "POST /v1/devices/{serial}/usage",
    "path": "/v1/devices/SN0000000001/usage",
    "status": "202",
    "responseLength": "620",
    "responseLatency": "24",
    "integrationLatency": "18",
    "integrationErrorMessage": "-",
    "authorizer.error": "-",
    "authorizer.userId": "-",
}
RESPONSE_HEADER_BYTES = 250  # status line and headers API Gateway adds to each answer

DEVICES = 6
DAYS = 2
READINGS_FUNCTIONS = frozenset({"device_authorizer", "usage_ingestion"})
ORDER_FUNCTIONS = frozenset({"reorder_decision", "notifications"})
REPORT_FUNCTIONS = frozenset({"report_worker"})
STACK_FUNCTIONS = frozenset({"report_planner"})
# The sandbox resets the functions' cached adapters whenever it switches between functions whose settings
# differ (they share one process there), so the LWA client secret is read again; in Lambda each execution
# environment reads it once. Those calls are left out of the per-unit counts.
SANDBOX_ONLY_CALLS = frozenset({("secretsmanager", "GetSecretValue")})
SHIP_AFTER = timedelta(hours=18)


@dataclass
class Unit:
    """What one unit (a request, a reorder, a device-day) costs in each service, measured."""

    name: str
    count: float
    invocations: float = 0.0
    gb_seconds: float = 0.0
    billed_ms: float = 0.0
    api_requests: float = 0.0
    write_units: float = 0.0
    read_units: float = 0.0
    kms: float = 0.0
    sqs: float = 0.0
    sns: float = 0.0
    drs: Counter[str] = field(default_factory=Counter)
    aws_calls: Counter[str] = field(default_factory=Counter)
    log_events: float = 0.0
    log_bytes: float = 0.0
    info_invocations: float = 0.0  # of functions whose system logs are at INFO: start + report lines
    emf_log_bytes: float = 0.0  # EMF metric documents (part of log_bytes)
    data_out_bytes: float = 0.0

    def dollars(self) -> dict[str, float]:
        """This unit's cost per service."""
        p = {name: price.usd for name, price in PRICES.items()}
        logged = (self.log_bytes + LOG_EVENT_OVERHEAD * self.log_events) / GB
        return {
            "API Gateway (HTTP API requests)": self.api_requests * p["api_request"],
            "Lambda requests": self.invocations * p["lambda_request"],
            "Lambda compute (GB-s, arm64)": self.gb_seconds * p["lambda_gb_second"],
            "DynamoDB writes (WRU, GSIs included)": self.write_units * p["dynamodb_write_unit"],
            "DynamoDB reads (RRU)": self.read_units * p["dynamodb_read_unit"],
            "SQS requests": self.sqs * p["sqs_request"],
            "SNS publishes": self.sns * p["sns_publish"],
            "KMS requests": self.kms * p["kms_request"],
            "CloudWatch Logs (ingestion + storage)": logged
            * (p["logs_ingested"] + p["logs_stored"] * LOG_RETENTION_MONTHS),
            "Data transfer out": self.data_out_bytes / GB * p["data_out"],
        }


@dataclass
class CostResult:
    devices: int
    days: int
    request: Unit
    order: Unit
    device_day: Unit
    planner_run: Unit
    monthly: dict[str, float]  # service → $ per device-month
    metrics: int
    stored_bytes_per_device: float
    item_sizes: dict[str, int]
    memory_mb: dict[str, int]
    system_log_levels: dict[str, str]
    checks: dict[str, Any]

    @property
    def total(self) -> float:
        return sum(self.monthly.values())

    def levers(self) -> list[tuple[str, float]]:
        """What two log settings would change per device-month, from the measured bytes (not applied).

        Positive: a saving; negative: an added cost.
        """
        per_gb = PRICES["logs_ingested"].usd + PRICES["logs_stored"].usd * LOG_RETENTION_MONTHS
        per_month = self.units_per_month
        units = {"request": self.request, "order": self.order, "device_day": self.device_day}
        at_info = sum(unit.info_invocations * per_month[key] for key, unit in units.items())
        at_warn = sum(unit.invocations * per_month[key] for key, unit in units.items()) - at_info
        hot_emf = self.request.emf_log_bytes * per_month["request"]
        system_logs = (
            ("Lambda system logs at INFO (-c systemLogLevel=INFO): start + report lines", -at_warn)
            if at_warn
            else ("Lambda system logs at WARN (the default): no start + report lines", at_info)
        )
        return [
            (system_logs[0], system_logs[1] * PLATFORM_EVENT_BYTES / GB * per_gb),
            ("no EMF document per usage request (authorizer + usage function)", hot_emf / GB * per_gb),
        ]

    @property
    def units_per_month(self) -> dict[str, float]:
        return {
            "request": REQUESTS_PER_DAY * DAYS_PER_MONTH,
            "order": ORDERS_PER_SLOT_MONTH * SLOTS,
            "device_day": DAYS_PER_MONTH,
            "planner_run": 24 * DAYS_PER_MONTH / FLEET,  # hourly, shared by the fleet
        }


# ------------------------------------------------------------------------------ running the profile


def _access_log_bytes(template: dict[str, Any]) -> int:
    """One access-log line of the API stage, its format from the template, typical values."""
    for resource in template["Resources"].values():
        settings = resource.get("Properties", {}).get("AccessLogSettings")
        if resource.get("Type") == "AWS::ApiGatewayV2::Stage" and settings:
            line = re.sub(
                r"\$context\.([A-Za-z.]+)",
                lambda m: ACCESS_LOG_VALUES.get(m.group(1), "-"),
                settings["Format"],
            )
            return len(line.encode("utf-8"))
    return 0


def _simulated_fleet(system: Any, meter: Meter) -> dict[str, Any]:
    """Link ``DEVICES`` through the gateway, then ``DAYS`` of hourly readings; snapshots around the run."""
    from sandbox.scenario import Product, SandboxClient, SimulatedDevice, Timeline

    client = SandboxClient.for_system(system)
    timeline = Timeline(system.control).attach(system)
    slots = {"Filter": Product("B0BFILTER1", 150, "L"), "Cleaner": Product("B0BCLEAN01", 500, "ml")}
    start = system.clock.now()
    devices = []
    for number, serial in enumerate(_serials_of_one_bucket(DEVICES)):
        customer = client.create_customer(f"customer {number}")
        linked = client.link_device(customer, "BenchFilter", serial, slots)
        # Half full, using a tenth of a slot a day: each slot's reorder point (its use over the lead
        # time) is crossed once the first day's rate is known.
        devices.append(
            SimulatedDevice(
                linked,
                levels={"Filter": 0.5, "Cleaner": 0.55},
                daily_use={"Filter": 15.0, "Cleaner": 50.0},
                noise=0.05,
                start=start,
            )
        )
    system.drain()
    timeline.poll()
    before = meter.snapshot()
    pumps_before = system.pump_stats()
    calls_before, notes_before = len(system.control.calls()), len(system.control.notifications())
    shipped: set[str] = set()
    requests = readings = 0
    response_bytes = 0
    rng = random.Random(11)
    for _ in range(DAYS * 24):
        previous = system.clock.now()
        system.advance(3600)
        now = system.clock.now()
        timeline.poll()
        for order in timeline.orders.values():
            confirmed = order.confirmed_at
            if (
                order.open
                and order.instance_id not in shipped
                and confirmed
                and now - confirmed >= SHIP_AFTER
            ):
                system.control.order_action(order.instance_id, "ship")
                shipped.add(order.instance_id)
        for device in devices:
            device.live(previous, now, rng)
            sent = device.readings(now)
            _, answer = client.post_usage(device.device, sent)
            requests += 1
            readings += len(sent)
            response_bytes += len(json.dumps(answer, separators=(",", ":")))
        system.drain()
    timeline.poll()
    after = meter.snapshot()
    calls = system.control.calls()[calls_before:]
    return {
        "usage": after - before,
        "pumps": _pump_delta(system.pump_stats(), pumps_before),
        "calls": calls,
        "notifications": system.control.notifications()[notes_before:],
        "requests": requests,
        "readings": readings,
        "response_bytes": response_bytes,
        "device_days": DEVICES * DAYS,
        "orders": sum(
            1
            for call in calls
            if call["operation"] == "replenish"
            and call.get("detailCode") in ("STANDARD_ORDER_PLACED", "TEST_ORDER_PLACED")
        ),
        "gateway_statuses": system.http_statuses,
        "errors": dict(system.errors),
    }


def _serials_of_one_bucket(count: int, bucket: str = "05") -> list[str]:
    """``count`` serials whose report bucket is ``bucket``: one report job covers them all."""
    from drs_core import schema

    serials, number = [], 0
    while len(serials) < count:
        serial = f"SNB{number:07d}"
        if schema.report_bucket(serial) == bucket:
            serials.append(serial)
        number += 1
    return serials


def _pump_delta(
    after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    return {
        name: {k: v - before.get(name, {}).get(k, 0) for k, v in stats.items()}
        for name, stats in after.items()
    }


def _unit(
    name: str,
    count: float,
    usage: Usage,
    functions: frozenset[str],
    write_units: dict[str, float],
    specs: dict[str, FunctionSpec],
) -> Unit:
    mine = usage.only(set(functions))
    unit = Unit(name, count)
    unit.invocations = sum(mine.invocations.values()) / count
    unit.billed_ms = sum(mine.billed_ms.values()) / count
    external = Counter()
    for (function, operation), n in mine.external.items():
        external[function] += n
        unit.drs[operation] += n / count
    unit.gb_seconds = (
        sum(
            (mine.billed_ms[fn] + EXTERNAL_CALL_MS * external[fn]) / 1000 * specs[fn].memory_mb / 1024
            for fn in mine.invocations
        )
        / count
    )
    unit.write_units = sum(write_units.get(fn, 0) for fn in functions) / count
    unit.read_units = sum(mine.read_units.values()) / count
    unit.kms = mine.service_calls("kms") / count
    unit.sqs = mine.service_calls("sqs") / count
    for (_, service, operation), n in mine.calls.items():
        if (service, operation) not in SANDBOX_ONLY_CALLS:
            unit.aws_calls[f"{service}:{operation}"] += n / count
    verbose = {fn for fn, spec in specs.items() if spec.system_log_level in ("INFO", "DEBUG")}
    unit.info_invocations = sum(n for fn, n in mine.invocations.items() if fn in verbose) / count
    unit.log_events = sum(mine.log_events.values()) / count + len(PLATFORM_LINES) * unit.info_invocations
    unit.log_bytes = sum(mine.log_bytes.values()) / count + PLATFORM_BYTES * unit.info_invocations
    unit.emf_log_bytes = sum(mine.emf_bytes.values()) / count
    return unit


@cache
def measure() -> CostResult:
    """Run the profile on the embedded system and price it (cached: the summary reuses it)."""
    from sandbox.system import EmbeddedSystem
    from sandbox.template import synthesized_template

    with (
        EmbeddedSystem(
            gateway_port=0,
            simulator_port=0,
            function_log_level="INFO",  # as deployed (infra/functions.py)
            environment={"POWERTOOLS_METRICS_DISABLED": "false"},  # EMF documents are logs too
        ) as system,
        Meter(system) as meter,
    ):
        run = _simulated_fleet(system, meter)
        usage: Usage = run["usage"]
        write_units = meter.write_units(usage)
        specs = {spec.name: spec for spec in system.template.functions.values()}
        stored = meter.stored_bytes() / DEVICES
        item_sizes = meter.item_sizes_by_kind()
        metrics = len(meter.usage.metrics)
        access_log = _access_log_bytes(synthesized_template())

    pumps, calls = run["pumps"], run["calls"]
    request = _unit(
        "usage request (2 slot readings)", run["requests"], usage, READINGS_FUNCTIONS, write_units, specs
    )
    request.api_requests = 1.0
    request.log_events += 1  # the access-log line
    request.log_bytes += access_log
    request.data_out_bytes = run["response_bytes"] / run["requests"] + RESPONSE_HEADER_BYTES

    orders = max(1, run["orders"])
    order = _unit("reorder (order + its notifications)", orders, usage, ORDER_FUNCTIONS, write_units, specs)
    published = len(run["notifications"])
    received = pumps.get("notifications<-sqs", {}).get("received", 0)
    # SNS → SQS (one SendMessage each), then the mapping's ReceiveMessage and DeleteMessage (unbatched:
    # an upper bound), per notification.
    order.sns = published / orders
    order.sqs += (published + 2 * received) / orders

    device_day = _unit(
        "device-day (daily reports)", run["device_days"], usage, REPORT_FUNCTIONS, write_units, specs
    )
    jobs = pumps.get("report_worker<-sqs", {}).get("received", 0)
    # The planner's SendMessageBatch of each job, the mapping's receive and delete of it.
    device_day.sqs += (usage.service_calls("sqs", set(STACK_FUNCTIONS)) + 2 * jobs) / run["device_days"]
    runs = max(1, usage.invocations["report_planner"])
    planner_run = _unit("report planner run (per stack)", runs, usage, STACK_FUNCTIONS, write_units, specs)
    planner_run.sqs = 0.0  # counted per device-day above

    result = CostResult(
        devices=DEVICES,
        days=DAYS,
        request=request,
        order=order,
        device_day=device_day,
        planner_run=planner_run,
        monthly={},
        metrics=metrics,
        stored_bytes_per_device=stored,
        item_sizes=item_sizes,
        memory_mb={name: spec.memory_mb for name, spec in specs.items()},
        system_log_levels={name: spec.system_log_level for name, spec in specs.items()},
        checks={
            "readings": run["readings"],
            "orders": run["orders"],
            "published notifications": published,
            "DRS/LWA calls in the simulator's log": len(calls),
            "DRS/LWA calls the meter attributed": sum(usage.external.values()),
            "gateway statuses": run["gateway_statuses"],
            "function errors": run["errors"],
        },
    )
    per_month = result.units_per_month
    monthly: Counter[str] = Counter()
    for unit, key in (
        (request, "request"),
        (order, "order"),
        (device_day, "device_day"),
        (planner_run, "planner_run"),
    ):
        for service, dollars in unit.dollars().items():
            monthly[service] += dollars * per_month[key]
    storage_gb = stored / GB
    monthly["DynamoDB storage + PITR"] = storage_gb * (
        PRICES["dynamodb_storage"].usd + PRICES["dynamodb_pitr"].usd
    )
    monthly["CloudWatch metrics (per metric, / 1 M devices)"] = metrics * PRICES["metric_month"].usd / FLEET
    result.monthly = dict(monthly)
    return result


# ------------------------------------------------------------------------------ printing


def _usd(value: float) -> str:
    return f"-${-value:.7f}" if value < 0 else f"${value:.7f}"


def run() -> None:
    result = measure()
    units = (result.request, result.order, result.device_day, result.planner_run)
    print_table(
        f"Measured per unit (embedded system: {result.devices} devices x {result.days} simulated days, "
        "hourly readings of 2 slots)",
        [
            "per",
            "invocations",
            "billed ms",
            "WRU",
            "RRU",
            "KMS",
            "SQS",
            "DRS/LWA calls",
            "log lines",
            "log bytes",
        ],
        [
            [
                unit.name,
                unit.invocations,
                unit.billed_ms,
                unit.write_units,
                unit.read_units,
                unit.kms,
                unit.sqs,
                sum(unit.drs.values()),
                unit.log_events,
                unit.log_bytes,
            ]
            for unit in units
        ],
    )
    per_month = result.units_per_month
    services = list(result.monthly)
    dollars = {unit.name: unit.dollars() for unit in units}
    rows = []
    for service in services:
        rows.append(
            [
                service,
                *(
                    _usd(dollars[unit.name].get(service, 0.0)) if service in dollars[unit.name] else "-"
                    for unit in units
                ),
                _usd(result.monthly[service]),
                f"{result.monthly[service] / result.total:.0%}",
            ]
        )
    rows.append(["total", "", "", "", "", _usd(result.total), "100%"])
    print_table(
        f"Cost per device-month (us-east-1, arm64 list prices; {per_month['request']:.0f} requests, "
        f"{per_month['order']:g} orders, {per_month['device_day']:.1f} device-days a month; "
        f"target ≤ ${TARGET_USD})",
        [
            "service",
            "per request",
            "per reorder",
            "per device-day",
            "per planner run",
            "per device-month",
            "share",
        ],
        rows,
    )
    print(
        f"assumptions: {ORDERS_PER_SLOT_MONTH:g} order per slot-month; DRS/LWA answer in "
        f"{EXTERNAL_CALL_MS:.0f} ms; memory {sorted(set(result.memory_mb.values()))} MB; {result.metrics} "
        f"distinct metrics over {FLEET:,} devices; {result.stored_bytes_per_device:,.0f} bytes stored per "
        "device; largest items (bytes): "
        + ", ".join(f"{kind} {size}" for kind, size in sorted(result.item_sizes.items()))
    )
    print_table(
        "Levers, not applied (from the measured log bytes)",
        ["change", "saves per device-month (-: costs)", "total would be"],
        [[name, _usd(saved), _usd(result.total - saved)] for name, saved in result.levers()],
    )
    print("cross-checks: " + "; ".join(f"{name}: {value}" for name, value in result.checks.items()))
    print_table(
        "Prices used (bench/cost.py PRICES)",
        ["price", "USD", "per", "source"],
        [[name, f"{price.usd:.10g}", price.per, price.source] for name, price in PRICES.items()],
    )
