"""Soak under faults (bench/soak.py): a fleet on the embedded system for simulated days while 20 % of
DRS and LWA calls fail or answer late and notifications arrive duplicated and out of order.

The simulator's world is on (10 % of parcels late, 5 % of notifications lost). The short form runs
here; ``--full`` plays 200 devices over 30 simulated days (also ``python -m bench.soak --full``). Every
invariant must hold: no duplicate order, no slot stuck, no published notification unhandled (ids
compared), every due report sent, DLQs empty, no 5xx, no unexpected function error, and the daily
visit's DRS calls per device-day within budget.
"""

from __future__ import annotations

import logging

import pytest

from bench.soak import (
    DRS_CALLS_PER_DEVICE_DAY_BUDGET,
    FULL,
    SHORT,
    VISIT_STAT,
    check_daily_slot_status,
    check_notification_ids,
    print_result,
    soak,
)


def test_the_fleet_holds_every_invariant_under_faults(
    full_size: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the soak plan (short here, hundreds of devices for weeks with --full)
    plan = FULL if full_size else SHORT
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # each injected timeout would warn

    # When the fleet lives through it with DRS/LWA faults and disorderly notifications
    result = soak(plan)
    with capsys.disabled():
        print_result(result)

    # Then every check held, and the run was not a quiet one
    assert not result.failures, "\n".join(result.failures[:20])
    assert result.stats["orders placed (replenish → placed)"] >= plan.devices
    assert result.stats["slow replenish (client timed out)"] > 0
    assert float(result.stats[VISIT_STAT]) <= DRS_CALLS_PER_DEVICE_DAY_BUDGET


def test_a_notification_never_handled_is_reported_by_id() -> None:
    # Given three ids published and two handled
    published, handled = {"n-1", "n-2", "n-3"}, {"n-1", "n-3"}

    # When the ids are compared
    failures = check_notification_ids(published, handled)

    # Then the missing one is named
    assert failures == ["notification n-2 was published but never handled"]


def test_a_day_without_a_slot_report_is_reported() -> None:
    # Given a slot reported on its first and third whole days only
    from datetime import UTC, datetime

    calls = [
        {"operation": "slotStatus", "status": 200, "serial": "S1", "slotId": "Filter", "at": day}
        for day in ("2026-01-02T05:00:00.000Z", "2026-01-04T05:00:00.000Z")
    ]
    linked = {"S1": datetime(2026, 1, 1, 0, 10, tzinfo=UTC)}

    # When the daily check runs up to the end of the fourth day
    failures = check_daily_slot_status(
        calls, {"S1": ["Filter"]}, linked, end=datetime(2026, 1, 5, tzinfo=UTC)
    )

    # Then the missing day is named
    assert failures == ["S1/Filter: no slotStatus on 2026-01-03"]
