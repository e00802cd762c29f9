"""Consumption-rate estimate and forecast: pure rules, property-tested."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drs_core.domain.forecast import MAX_HORIZON_DAYS, days_of_stock, forecast, update_daily_rate

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
quantities = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)
lead_days = st.floats(min_value=0, max_value=60, allow_nan=False)


@given(remaining=positive, on_hand=quantities, rate=positive, lead=lead_days)
def test_forecast_never_predicts_a_run_out_in_the_past_for_positive_stock(remaining, on_hand, rate, lead):
    # Given positive stock and a positive rate
    # When the forecast is made
    result = forecast(
        remaining=remaining, on_hand=on_hand, daily_consumption=rate, now=NOW, lead_time_days=lead
    )
    # Then run-out is not before now, and replenishment is between now and run-out
    assert result is not None
    assert result.run_out_at >= NOW
    assert NOW <= result.expected_replenishment_at <= result.run_out_at


@given(remaining=quantities, on_hand=quantities, rate=positive, extra=positive)
def test_more_stock_never_runs_out_sooner(remaining, on_hand, rate, extra):
    less = forecast(remaining=remaining, on_hand=on_hand, daily_consumption=rate, now=NOW, lead_time_days=7)
    more = forecast(
        remaining=remaining + extra, on_hand=on_hand, daily_consumption=rate, now=NOW, lead_time_days=7
    )
    assert more.run_out_at >= less.run_out_at


def test_stock_on_hand_counts_as_remaining():
    # Given 10 units in the slot and 20 shipped but not loaded, used at 3 a day
    result = forecast(remaining=10, on_hand=20, daily_consumption=3, now=NOW, lead_time_days=7)
    # Then the run-out is 30 / 3 = 10 days away and the order is due 7 days before
    assert result.run_out_at == NOW + timedelta(days=10)
    assert result.expected_replenishment_at == NOW + timedelta(days=3)


@pytest.mark.parametrize("rate", [None, 0.0, -1.0])
def test_no_forecast_without_measurable_use(rate):
    assert forecast(remaining=5, on_hand=0, daily_consumption=rate, now=NOW, lead_time_days=7) is None


def test_horizon_is_capped():
    assert days_of_stock(1e9, 1e-9) == MAX_HORIZON_DAYS


def test_first_observation_sets_the_rate():
    # Given no estimate, when 6 units are used over two days
    assert update_daily_rate(None, consumed=6, elapsed_seconds=2 * 86_400) == pytest.approx(3.0)


@given(previous=positive, consumed=quantities, seconds=st.floats(min_value=1, max_value=90 * 86_400))
def test_blended_rate_lies_between_old_estimate_and_observation(previous, consumed, seconds):
    observed = consumed / (seconds / 86_400)
    blended = update_daily_rate(previous, consumed, seconds)
    assert min(previous, observed) * (1 - 1e-9) <= blended <= max(previous, observed) * (1 + 1e-9)


def test_a_longer_observation_weighs_more():
    one_hour = update_daily_rate(10.0, consumed=0, elapsed_seconds=3_600)
    one_week = update_daily_rate(10.0, consumed=0, elapsed_seconds=7 * 86_400)
    assert one_week < one_hour < 10.0


@pytest.mark.parametrize(("consumed", "seconds"), [(-5.0, 3600), (5.0, 0), (float("nan"), 3600)])
def test_meaningless_observations_leave_the_estimate_unchanged(consumed, seconds):
    assert update_daily_rate(4.0, consumed, seconds) == 4.0


def test_with_a_reorder_point_the_replenishment_date_is_when_stock_reaches_it():
    # Given 10 in the slot and 20 on hand used at 3 a day, and a reorder point of 12
    result = forecast(
        remaining=10, on_hand=20, daily_consumption=3, now=NOW, lead_time_days=7, reorder_point=12
    )
    # Then the policy orders when 18 have been used: in 6 days; already at or below it: now
    assert result.expected_replenishment_at == NOW + timedelta(days=6)
    below = forecast(remaining=5, on_hand=0, daily_consumption=3, now=NOW, lead_time_days=7, reorder_point=12)
    assert below.expected_replenishment_at == NOW


@given(remaining=positive, on_hand=quantities, rate=positive, point=quantities)
def test_the_policys_replenishment_date_lies_between_now_and_run_out(remaining, on_hand, rate, point):
    result = forecast(
        remaining=remaining,
        on_hand=on_hand,
        daily_consumption=rate,
        now=NOW,
        lead_time_days=7,
        reorder_point=point,
    )
    assert result is not None
    assert NOW <= result.expected_replenishment_at <= result.run_out_at
