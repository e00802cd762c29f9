"""Demand estimation: daily use history, level, absences, weekly pattern, variability and lead time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from drs_core.domain import estimation
from drs_core.domain.estimation import DemandEstimate, learn_lead_time, observe_use, plan
from drs_core.domain.models import DeviceStatus, Slot, SlotPolicy
from drs_core.domain.reorder_policy import Verdict, decide, expected_stock, reorder_point

MONDAY = datetime(2026, 3, 2, 3, tzinfo=UTC)


def with_history(values: list[float], last_day: datetime = MONDAY, **changes: object) -> DemandEstimate:
    return DemandEstimate(history=tuple(values), observed_at=last_day, consumed_mark=0.0, **changes)  # type: ignore[arg-type]


def test_the_first_visit_only_sets_the_marks_and_later_ones_append_a_day_each() -> None:
    first = observe_use(DemandEstimate(), consumed_total=10.0, last_reading_at=MONDAY)
    assert first.history == () and first.consumed_mark == 10.0
    second = observe_use(first, consumed_total=14.0, last_reading_at=MONDAY + timedelta(days=1))
    assert second.history == (4.0,)
    # No newer reading: nothing learnt (a device offline is not a slot unused).
    assert observe_use(second, consumed_total=14.0, last_reading_at=MONDAY + timedelta(days=1)) == second


def test_a_gap_of_several_days_is_spread_over_them_and_the_history_is_bounded() -> None:
    start = observe_use(DemandEstimate(), consumed_total=0.0, last_reading_at=MONDAY)
    after_gap = observe_use(start, consumed_total=9.0, last_reading_at=MONDAY + timedelta(days=3))
    assert after_gap.history == pytest.approx((3.0, 3.0, 3.0))
    long = observe_use(after_gap, consumed_total=100.0, last_reading_at=MONDAY + timedelta(days=60))
    assert len(long.history) == estimation.HISTORY_DAYS


def test_no_plan_before_a_few_days_of_use_so_the_fixed_rule_applies() -> None:
    assert plan(with_history([3.0, 3.0]), now=MONDAY, prior_lead_time_days=7) is None
    assert plan(with_history([0.0] * 10), now=MONDAY, prior_lead_time_days=7) is None


def test_a_steady_slot_orders_its_lead_time_of_use_plus_a_small_safety_stock() -> None:
    estimate = with_history([5.0] * 14, lead_time_days=3.0, lead_time_spread=0.0)
    planned = plan(estimate, now=MONDAY, prior_lead_time_days=7)
    assert planned is not None
    assert planned.daily_use == pytest.approx(5.0)
    assert planned.horizon_days == pytest.approx(3.0 + estimation.REVIEW_DAYS)
    # Only the carriers' lateness allowance: no daily variability.
    expected_safety = estimation.SERVICE_Z * 5.0 * estimation.LATE_ALLOWANCE_DAYS
    assert planned.safety_stock == pytest.approx(expected_safety)
    assert planned.reorder_point == pytest.approx(5.0 * planned.horizon_days + expected_safety)


def test_more_variable_use_holds_more_safety_stock() -> None:
    steady = plan(with_history([5.0] * 14, lead_time_days=3.0), now=MONDAY, prior_lead_time_days=7)
    noisy = plan(with_history([2.0, 8.0] * 7, lead_time_days=3.0), now=MONDAY, prior_lead_time_days=7)
    assert steady is not None and noisy is not None
    assert noisy.safety_stock > steady.safety_stock


def test_a_rise_in_use_is_followed_within_days() -> None:
    rising = plan(with_history([4.0] * 11 + [8.0] * 3), now=MONDAY, prior_lead_time_days=3)
    assert rising is not None
    assert rising.daily_use == pytest.approx(8.0)


def test_a_vacation_is_not_taken_for_the_end_of_use() -> None:
    home, away = [4.0, 5.0, 4.0, 5.0, 4.0, 5.0, 4.0], [0.0] * 10
    assert estimation.active_days(tuple(home + away)) == list(range(7))
    during = plan(with_history(home + away), now=MONDAY, prior_lead_time_days=3)
    back = plan(with_history(home + away + [5.0]), now=MONDAY, prior_lead_time_days=3)
    assert during is not None and back is not None
    assert during.daily_use == pytest.approx(sum(home) / len(home))
    assert back.daily_use > 4.0


def test_one_idle_day_still_counts_as_use() -> None:
    assert estimation.active_days((4.0, 0.0, 4.0, 0.0, 0.0, 4.0)) == [0, 1, 2, 3, 4, 5]


def test_a_weekly_pattern_is_used_when_the_data_shows_it() -> None:
    # Four weeks ending on a Sunday: weekends use 10, weekdays 4.
    sunday = MONDAY - timedelta(days=1)
    weeks = [4.0, 4.0, 4.0, 4.0, 4.0, 10.0, 10.0] * 4
    factors = estimation.weekday_factors(tuple(weeks), list(range(28)), sunday)
    assert factors is not None and factors[5] > 1.5 and factors[0] < 0.8
    friday = sunday + timedelta(days=5)
    over_weekend = plan(with_history(weeks, sunday, lead_time_days=2.0), now=friday, prior_lead_time_days=2)
    midweek = plan(with_history(weeks, sunday, lead_time_days=2.0), now=MONDAY, prior_lead_time_days=2)
    assert over_weekend is not None and midweek is not None
    assert over_weekend.daily_use > midweek.daily_use
    # Noise alone shows no weekly pattern.
    flat = [4.0, 5.0, 3.0, 4.5, 4.0, 3.5, 5.0] * 4
    assert estimation.weekday_factors(tuple(flat), list(range(28)), sunday) is None


def test_the_lead_time_is_learnt_from_drs_estimates_once_per_order() -> None:
    placed = MONDAY
    first = learn_lead_time(
        DemandEstimate(), order_id="o1", placed_at=placed, estimated_delivery=placed + timedelta(days=3)
    )
    assert first.lead_time_days == pytest.approx(3.0)
    again = learn_lead_time(
        first, order_id="o1", placed_at=placed, estimated_delivery=placed + timedelta(days=9)
    )
    assert again == first
    second = learn_lead_time(
        first, order_id="o2", placed_at=placed, estimated_delivery=placed + timedelta(days=5)
    )
    assert 3.0 < (second.lead_time_days or 0) < 5.0 and (second.lead_time_spread or 0) > 0
    nonsense = learn_lead_time(second, order_id="o3", placed_at=placed, estimated_delivery=placed)
    assert nonsense.lead_time_days == second.lead_time_days and nonsense.lead_time_order == "o3"


def test_a_learnt_lead_time_replaces_the_policy_prior() -> None:
    prior = plan(with_history([5.0] * 14), now=MONDAY, prior_lead_time_days=7)
    learnt = plan(with_history([5.0] * 14, lead_time_days=2.0), now=MONDAY, prior_lead_time_days=7)
    assert prior is not None and learnt is not None
    assert learnt.reorder_point < prior.reorder_point


def test_the_planned_point_replaces_the_fixed_rule_in_reorder_point_and_decide() -> None:
    policy = SlotPolicy()
    assert reorder_point(100.0, policy, 1.0) == pytest.approx(20.0)  # 20 % of a full slot
    assert reorder_point(100.0, policy, 1.0, planned=6.5) == pytest.approx(6.5)
    slot = Slot(serial="SN1", slot_id="Filter", subscribed=True, original_quantity=100, remaining_quantity=10)
    assert decide(DeviceStatus.LINKED, slot, MONDAY).verdict is Verdict.REORDER
    planned = replace(slot, planned_reorder_point=6.5)
    assert decide(DeviceStatus.LINKED, planned, MONDAY).verdict is Verdict.ENOUGH_STOCK


def test_the_stock_of_a_silent_device_is_projected_at_its_rate_for_up_to_three_days() -> None:
    slot = Slot(
        serial="SN1",
        slot_id="Filter",
        subscribed=True,
        original_quantity=100,
        remaining_quantity=30,
        daily_consumption=5.0,
        last_reading_at=MONDAY,
    )
    # Reporting on time: the stock as last read
    assert expected_stock(slot, MONDAY + timedelta(hours=6)) == 30
    # Silent for two days: ten used since
    assert expected_stock(slot, MONDAY + timedelta(days=2)) == pytest.approx(20.0)
    # Silent for longer: taken to be off or away, nothing projected
    assert expected_stock(slot, MONDAY + timedelta(days=4)) == 30
    # and never below empty
    assert expected_stock(replace(slot, remaining_quantity=3.0), MONDAY + timedelta(days=2)) == 0.0
