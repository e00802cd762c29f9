"""Pure reporting rules: buckets, what is due on a report day, and the figures of a slot report."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drs_core import schema
from drs_core.domain.models import Device, Slot, SlotPolicy
from drs_core.domain.reporting import (
    NO_FORECAST_DAYS,
    ReportMarks,
    SlotReportMark,
    bucket_for_hour,
    device_report_due,
    expected_replenishment_date,
    most_recently_active,
    report_day,
    slot_figures,
    slot_report_due,
)
from drs_core.services.reporting import ReportJob

NOW = datetime(2026, 3, 10, 7, 30, tzinfo=UTC)
DAY = "2026-03-10"


def test_buckets_are_stable_and_spread_evenly_over_the_day():
    # Given 24,000 serials
    serials = [f"SN{index:08d}" for index in range(24_000)]
    # When each is put in its bucket
    buckets = Counter(schema.report_bucket(serial) for serial in serials)
    # Then there are exactly 24 two-digit buckets, each within 10 % of 1,000, and the hash is stable
    assert sorted(buckets) == [f"{hour:02d}" for hour in range(24)]
    assert all(900 <= count <= 1100 for count in buckets.values()), buckets
    assert schema.report_bucket("SN00000042") == schema.report_bucket("SN00000042")


@given(st.datetimes(timezones=st.just(UTC)))
@settings(max_examples=50)
def test_the_bucket_of_an_hour_is_its_utc_hour_and_the_day_its_utc_date(when):
    # Given any instant
    # When the planner derives its bucket and report day
    bucket, day = bucket_for_hour(when), report_day(when)
    # Then they are the UTC hour and date, in the forms the index and the marks use
    assert bucket == f"{when.hour:02d}" and day == when.date().isoformat()


def test_the_device_report_is_due_until_the_day_is_marked():
    # Given marks of no day, of yesterday and of today
    # Then only a device already reported today is not due
    assert device_report_due(ReportMarks(), DAY)
    assert device_report_due(ReportMarks(device_day="2026-03-09"), DAY)
    assert not device_report_due(ReportMarks(device_day=DAY), DAY)


@pytest.mark.parametrize(
    ("subscribed", "last_use", "last_reading", "mark", "due"),
    [
        # never measured: quantities are placeholders, nothing to report
        (True, None, None, SlotReportMark(), False),
        # subscribed and measured: daily, even without use
        (True, None, NOW, SlotReportMark(), True),
        (True, None, NOW, SlotReportMark(day="2026-03-09", use_at=None), True),
        # never twice on one report day, consumed or not
        (True, NOW, NOW, SlotReportMark(day=DAY, use_at=NOW - timedelta(days=1)), False),
        # unsubscribed: only when consumed since the last report
        (False, NOW, NOW, SlotReportMark(day="2026-03-09", use_at=NOW - timedelta(days=1)), True),
        (False, NOW, NOW, SlotReportMark(day="2026-03-09", use_at=NOW), False),
        (False, None, NOW, SlotReportMark(), False),
    ],
)
def test_slot_report_due(subscribed, last_use, last_reading, mark, due):
    # Given a slot's subscription, last use and reading, and what was reported
    # When the rule decides
    # Then the slot is reported when consumed since, or daily when subscribed, never twice a day
    assert (
        slot_report_due(
            subscribed=subscribed, last_use_at=last_use, last_reading_at=last_reading, mark=mark, day=DAY
        )
        is due
    )


def test_last_activity_is_the_latest_reading_else_the_link_time_never_the_future():
    # Given readings on two slots, and a device with none
    early, late = NOW - timedelta(hours=5), NOW - timedelta(hours=1)
    device = Device(serial="SN1", model_id="M", linked_at=NOW - timedelta(days=3))
    read = [Slot("SN1", "A", last_reading_at=early), Slot("SN1", "B", last_reading_at=late), Slot("SN1", "C")]
    # Then activity is the latest reading; without readings the link time; capped at now
    assert most_recently_active(device, read, NOW) == late
    assert most_recently_active(device, [Slot("SN1", "C")], NOW) == device.linked_at
    future = [Slot("SN1", "A", last_reading_at=NOW + timedelta(hours=1))]
    assert most_recently_active(Device(serial="SN1", model_id="M"), future, NOW) == NOW


def test_expected_replenishment_is_run_out_minus_lead_time_or_a_year_ahead_without_use():
    # Given a slot using 1 unit a day with 10 + 2 on hand and 7 days lead time, and an idle one
    used = Slot("SN1", "Filter", remaining_quantity=10, on_hand_quantity=2, daily_consumption=1.0)
    idle = Slot("SN1", "Cleaner", remaining_quantity=3, daily_consumption=None)
    # Then the first is due in 12 - 7 = 5 days; the idle one a year ahead
    assert expected_replenishment_date(used, NOW) == NOW + timedelta(days=5)
    assert expected_replenishment_date(idle, NOW) == NOW + timedelta(days=NO_FORECAST_DAYS)


def test_expected_replenishment_is_never_in_the_past():
    # Given a slot that runs out within its lead time
    slot = Slot(
        "SN1", "Filter", remaining_quantity=1, daily_consumption=1.0, policy=SlotPolicy(lead_time_days=7)
    )
    # Then DRS is told "now"
    assert expected_replenishment_date(slot, NOW) == NOW


def test_slot_figures_count_stock_on_hand_and_never_go_negative():
    # Given an over-drawn slot with stock on its way, last used an hour ago
    slot = Slot(
        "SN1",
        "Filter",
        original_quantity=10,
        remaining_quantity=-0.5,
        on_hand_quantity=10,
        daily_consumption=2.0,
        last_use_at=NOW - timedelta(hours=1),
        last_reading_at=NOW - timedelta(minutes=5),
    )
    # When its report figures are built
    figures = slot_figures(slot, now=NOW)
    # Then remaining is clamped at 0, total on hand is the shipped stock, and last use is the use
    assert figures.remaining_quantity == 0
    assert figures.total_quantity_on_hand == 10
    assert figures.original_quantity == 10
    assert figures.last_use_date == NOW - timedelta(hours=1)


def test_total_on_hand_is_the_stock_not_yet_loaded_as_in_amazons_sample():
    # Given Amazon's own slotStatus sample: 1 left in the slot of 2, and 20 on hand besides
    slot = Slot(
        "SN1",
        "Filter",
        original_quantity=2,
        remaining_quantity=1,
        on_hand_quantity=20,
        last_reading_at=NOW - timedelta(minutes=5),
    )
    # When its report figures are built
    figures = slot_figures(slot, now=NOW)
    # Then totalQuantityOnHand is the 20 not yet loaded into the device, not remaining + on hand
    assert (figures.remaining_quantity, figures.original_quantity) == (1, 2)
    assert figures.total_quantity_on_hand == 20


def test_a_slot_never_used_reports_its_last_reading_as_last_use():
    # Given a measured slot nobody drew from
    slot = Slot("SN1", "Filter", remaining_quantity=4, last_reading_at=NOW - timedelta(hours=2))
    # Then its last use date is its last reading
    assert slot_figures(slot, now=NOW).last_use_date == NOW - timedelta(hours=2)


def test_a_report_job_survives_its_message_and_rejects_garbage():
    # Given a job
    job = ReportJob("2026-03-10", "07", NOW, ("SN1", "SN2"))
    # Then its SQS body parses back to the same job, and bodies that are not jobs are refused
    assert ReportJob.from_json(job.to_json()) == job
    for body in ("[]", '{"day": "2026-03-10", "bucket": "07"}', '{"serials": ["SN1"]}', "not json"):
        with pytest.raises(ValueError):
            ReportJob.from_json(body)
