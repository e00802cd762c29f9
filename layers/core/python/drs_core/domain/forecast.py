"""Consumption-rate estimate and run-out forecast: pure functions of state and time.

The rate is an exponentially weighted average of observed consumption per day, weighted by elapsed
time, so a week of silence counts for more than one busy hour. A forecast exists only when there is a
positive rate: a slot nobody uses never runs out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

SECONDS_PER_DAY = 86_400.0
# Weight kept by the old estimate after one day: a half-life of about two days.
DAILY_RETENTION = 0.7
# Forecasts further out than this are not meaningful (and overflow datetime): cap them.
MAX_HORIZON_DAYS = 3650.0


@dataclass(frozen=True, slots=True)
class Forecast:
    daily_consumption: float
    run_out_at: datetime
    expected_replenishment_at: datetime


def update_daily_rate(previous: float | None, consumed: float, elapsed_seconds: float) -> float | None:
    """Blend the rate observed over ``elapsed_seconds`` into the previous estimate.

    ``consumed`` may be 0 (an idle period pulls the rate down); negative consumption (stock went up
    without a refill reading) carries no information about use and leaves the estimate unchanged.
    """
    if elapsed_seconds <= 0 or consumed < 0 or not math.isfinite(consumed):
        return previous
    elapsed_days = elapsed_seconds / SECONDS_PER_DAY
    observed = consumed / elapsed_days
    if previous is None:
        return observed
    kept = DAILY_RETENTION**elapsed_days
    return kept * previous + (1.0 - kept) * observed


def days_of_stock(stock: float, daily_consumption: float | None) -> float | None:
    """How many days ``stock`` lasts at the estimated rate (None: no measurable use)."""
    if daily_consumption is None or daily_consumption <= 0:
        return None
    return min(max(stock, 0.0) / daily_consumption, MAX_HORIZON_DAYS)


def forecast(
    *,
    remaining: float,
    on_hand: float,
    daily_consumption: float | None,
    now: datetime,
    lead_time_days: float,
    reorder_point: float | None = None,
) -> Forecast | None:
    """Run-out date and the expected replenishment date, never before now: when stock reaches
    ``reorder_point`` (the date the policy will order) if given, else run-out minus lead time.

    Stock on hand (shipped, not yet loaded) counts as remaining.
    """
    days = days_of_stock(remaining + on_hand, daily_consumption)
    if days is None:
        return None
    run_out = now + timedelta(days=days)
    if reorder_point is not None:
        until_order = days_of_stock(remaining + on_hand - reorder_point, daily_consumption) or 0.0
        replenish_at = min(now + timedelta(days=until_order), run_out)
    else:
        replenish_at = max(now, run_out - timedelta(days=lead_time_days))
    return Forecast(daily_consumption, run_out, replenish_at)  # type: ignore[arg-type]
