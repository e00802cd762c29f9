"""The one summary table of ``make bench``: every figure next to its baseline from the same run.

It runs last (the runner goes alphabetically) and quotes the other modules' measurements, which each
module caches (``measure()``): nothing is measured twice in one ``make bench``, and ``python -m bench
summary`` alone measures what it needs. Baselines are measured in this process (an ``import boto3`` with
one client, a bare ``UpdateItem``), or are the targets of docs/architecture.md §6 and the issues, or Lambda's
quotas; "holds" compares with the target.
"""

from __future__ import annotations

from bench import cold_start, cost, ingestion, packages, replenishment, reporting, soak
from bench.table import print_table

# One usage reading a day per slot is the daily rate update: a refused blind write, then the exact one.
WRITES_PER_READING_TARGET = 1 + 1 / 24


def _holds(ok: bool) -> str:
    return "yes" if ok else "NO"


def rows() -> list[list[object]]:
    """The summary's rows: figure, measured, baseline, ratio, target, holds."""
    table: list[list[object]] = []
    started = cold_start.measure()
    base_ms = started.baseline.median_s * 1000
    for handler in started.handlers:
        ratio = started.ratio(handler)
        table.append(
            [
                f"cold start: import functions/{handler.name}",
                f"{handler.median_s * 1000:.0f} ms",
                f"{base_ms:.0f} ms (boto3 + client)",
                f"{ratio:.2f}",
                f"≤ {cold_start.TARGET_RATIO}",
                _holds(ratio <= cold_start.TARGET_RATIO),
            ]
        )

    usage = ingestion.measure()
    per_write = usage.handler_s / usage.bare_update_s / 2
    table.append(
        [
            "warm usage request, 2 readings (handler, moto)",
            f"{usage.handler_s * 1000:.1f} ms",
            f"{usage.bare_update_s * 1000:.2f} ms (bare UpdateItem)",
            f"{per_write:.1f} per write",
            "-",
            "-",
        ]
    )
    table.append(
        [
            "DynamoDB writes per slot reading (day)",
            f"{usage.writes_per_reading:.3f}",
            "1 + the daily rate update",
            f"{usage.writes_per_reading / WRITES_PER_READING_TARGET:.2f}",
            f"≤ {WRITES_PER_READING_TARGET:.3f}",
            _holds(usage.writes_per_reading <= WRITES_PER_READING_TARGET + 1e-9),
        ]
    )
    table.append(
        [
            "DynamoDB reads per slot reading",
            f"{usage.reads_per_reading:g}",
            "0",
            "-",
            "0",
            _holds(not usage.reads_per_reading),
        ]
    )
    table.append(
        [
            "reorder invocations per non-due reading",
            f"{usage.reorder_invocations_per_reading:g}",
            "0",
            "-",
            "0",
            _holds(not usage.reorder_invocations_per_reading),
        ]
    )

    priced = cost.measure()
    replenish = priced.order.drs.get("drs:replenish", 0.0)
    table.append(
        [
            "DRS replenish calls per order placed",
            f"{replenish:.2f}",
            "1 per need",
            f"{replenish:.2f}",
            "1",
            _holds(abs(replenish - 1) < 1e-9),
        ]
    )
    for unit, label in (
        (priced.request, "AWS calls per usage request"),
        (priced.order, "AWS calls per reorder (order + notifications)"),
        (priced.device_day, "AWS calls per device-day (reports)"),
    ):
        table.append([label, f"{sum(unit.aws_calls.values()):.1f}", _top(unit.aws_calls), "-", "-", "-"])
    reports = reporting.measure()
    table.append(
        [
            "DRS report calls per device-day",
            f"{reports.drs_calls_per_device_day:g}",
            "1 deviceStatus + consumed slots",
            f"{reports.drs_calls_per_device_day / reports.target_per_device_day:.2f}",
            f"{reports.target_per_device_day:g}",
            _holds(reports.drs_calls_per_device_day <= reports.target_per_device_day),
        ]
    )
    visit = soak.measure()
    per_day = float(visit.stats[soak.VISIT_STAT])
    table.append(
        [
            f"DRS calls per device-day, daily visit with reconciliation ({visit.plan.days}-day soak)",
            f"{per_day:.3f}",
            "3 (deviceStatus + 2 slotStatus)",
            f"{per_day / 3:.3f}",
            f"≤ {soak.DRS_CALLS_PER_DEVICE_DAY_BUDGET}",
            _holds(per_day <= soak.DRS_CALLS_PER_DEVICE_DAY_BUDGET),
        ]
    )
    table.append(
        [
            "repeated DRS reports (faults included)",
            reports.repeated_reports,
            "0",
            "-",
            "0",
            _holds(reports.repeated_reports == 0),
        ]
    )

    sizes = packages.measure()
    largest = max(sizes.functions, key=lambda p: p.zipped_bytes)
    for label, package in (
        (f"code asset, largest ({largest.name})", largest),
        ("core layer (drs_core)", sizes.core),
        ("deps layer (requirements.txt)", sizes.deps),
    ):
        table.append(
            [
                f"package: {label}, zipped",
                f"{package.zipped_mb:.1f} MB"
                if package.zipped_mb >= 1
                else f"{package.zipped_bytes / 1024:.1f} KB",
                f"{packages.ZIPPED_UPLOAD_QUOTA_MB:.0f} MB (zip quota)",
                f"{package.zipped_mb / packages.ZIPPED_UPLOAD_QUOTA_MB:.3f}",
                "-",
                "-",
            ]
        )
    total = sizes.largest_total_unzipped_mb
    table.append(
        [
            "package: function + both layers, unzipped",
            f"{total:.1f} MB",
            f"{packages.UNZIPPED_QUOTA_MB:.0f} MB (quota)",
            f"{total / packages.UNZIPPED_QUOTA_MB:.3f}",
            f"≤ {packages.UNZIPPED_QUOTA_MB:.0f} MB",
            _holds(total <= packages.UNZIPPED_QUOTA_MB),
        ]
    )
    table.append(
        [
            "cost per device-month (24 readings/day x 2 slots)",
            f"${priced.total:.5f}",
            f"${cost.TARGET_USD} (docs/architecture.md §6)",
            f"{priced.total / cost.TARGET_USD:.2f}",
            f"≤ ${cost.TARGET_USD}",
            _holds(priced.total <= cost.TARGET_USD),
        ]
    )
    quality = replenishment.measure()
    naive, oracle = quality.overall["naive"], quality.overall["oracle"]
    baselines = [
        f"{naive.stockout_hours:.2f} h (naive)",
        f"{naive.stockout_hours:.2f} h (naive), {oracle.stockout_hours:.2f} h (oracle)",
        f"{max(p['naive'].dry_share for p in quality.by_pattern.values()):.1%} (naive, worst)",
        f"{oracle.earliness:.2f} d (oracle)",
    ]
    for (goal, measured, target, ok), baseline in zip(quality.goals(), baselines, strict=True):
        table.append([f"replenishment: {goal}", measured, baseline, "-", target, _holds(ok)])
    return table


def _top(calls: dict[str, float], count: int = 3) -> str:
    """The most frequent calls, e.g. ``dynamodb:UpdateItem 1, dynamodb:GetItem 0.5``."""
    ordered = sorted(calls.items(), key=lambda item: -item[1])[:count]
    return ", ".join(f"{name} {value:.2g}" for name, value in ordered)


def run() -> None:
    print_table(
        "SUMMARY (every figure next to its baseline or target from this run)",
        ["figure", "measured", "baseline / reference", "ratio", "target", "holds"],
        rows(),
    )
