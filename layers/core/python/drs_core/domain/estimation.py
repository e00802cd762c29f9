"""Demand and lead-time estimation: the slot's planned reorder point, re-estimated on the daily visit.

The hot path compares a stored quantity, the reorder point, with each reading (``domain.usage``); this
module decides what that quantity should be, once a day per slot, from what the slot has shown:

- **daily use**: the report worker visits every slot daily and appends the use since its last visit
  (``observe_use``; the usage path keeps the cumulative count, ``UsageState.consumed_total``) to a
  short history (``HISTORY_DAYS``). A visit that finds no new reading adds nothing: a device that was
  offline is not a slot that was not used, and its next reading spreads the gap's use over the gap.
- **level**: the mean of the recent active days, switching to the last few days as soon as they
  differ from it by more than noise can explain (a rate that doubles or halves is followed within
  days, not weeks);
- **absence**: a run of ``ABSENCE_DAYS`` or more idle days (a vacation) is left out of the level and
  of the variability: the household comes back at its old rate, and an idle slot cannot cross its
  reorder point anyway, so keeping the rate costs nothing;
- **weekly seasonality**: per-weekday factors, used only when the history shows them beyond noise;
- **variability**: the spread of daily use around the (weekday-adjusted) level gives the safety stock,
  instead of a fixed number of days;
- **lead time**: learnt from DRS's estimated delivery date of each order against when it was placed
  (``learn_lead_time``), with its spread; the slot's policy lead time is the prior until then.

The planned reorder point is the use expected over the lead time plus the review delay, plus a safety
stock ``SERVICE_Z`` standard deviations of that use (daily variability over the horizon and the lead
time's own uncertainty). Pure functions of the estimate and time; the service persists the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from statistics import NormalDist

SECONDS_PER_DAY = 86_400.0
# Days of daily use kept: four weeks, enough to see a weekly pattern and short enough to follow change.
HISTORY_DAYS = 28
# No plan from fewer days than this: the reorder point falls back to the policy's fixed rule.
MIN_HISTORY_DAYS = 3
# Consecutive idle days from which the slot's household is taken to be away, not using less.
ABSENCE_DAYS = 3
# A day using less than this share of the typical day is idle.
IDLE_SHARE = 0.1
# Days of the long level and of the short one that tracks a change in the rate.
LEVEL_DAYS = 14
RECENT_DAYS = 3
FALL_DAYS = 7
# The short level replaces the long one when they differ by this many standard errors.
CHANGE_Z = 2.0
# Weekly factors are used when weekday and weekend use differ by this many standard errors.
WEEKLY_Z = 3.0
# Active days from which weekly factors are looked for at all (two of each weekday).
WEEKLY_MIN_DAYS = 14
# Days in a run of the long memory of bursts, and the weight of a new day in it (about 60 days).
RUN_DAYS = 3
RUN_WEIGHT = 1 / 60
# Standard deviations of use over the horizon held as safety stock when the package size is unknown.
SERVICE_Z = 2.25
# Share of slot-months allowed to run dry (the 2 %, with a margin); per order it is this divided
# by the orders a month, within these bounds.
MONTHLY_RISK = 0.01
MIN_ORDER_RISK, MAX_ORDER_RISK = 0.002, 0.05
# The delay between stock crossing the reorder point and the reading that shows it: half the interval
# of a device reporting every six hours.
REVIEW_DAYS = 0.125
# Lead-time uncertainty assumed on top of what the estimates show: carriers are sometimes late.
LATE_ALLOWANCE_DAYS = 0.9
# Weight of a new lead-time sample in the learnt mean and spread.
LEAD_TIME_WEIGHT = 0.3
# Lead-time samples outside this range are not deliveries (test data, a lost order): ignored.
MIN_LEAD_DAYS, MAX_LEAD_DAYS = 0.1, 30.0


@dataclass(frozen=True, slots=True)
class DemandEstimate:
    """What the daily visits learnt about one slot (persisted on the slot item)."""

    history: tuple[float, ...] = ()  # daily use, oldest first; the last day ends at ``observed_at``
    observed_at: datetime | None = None  # newest reading the history accounts for
    consumed_mark: float | None = None  # the slot's cumulative use at ``observed_at``
    lead_time_days: float | None = None  # learnt: DRS's estimated delivery date minus placement
    lead_time_spread: float | None = None  # mean absolute deviation of those samples
    lead_time_order: str | None = None  # the last order learnt from (each order counts once)
    # Long memory of how bursty use is: the squared deviation of each run of ``RUN_DAYS`` days from the
    # typical, relative to it, per day (an average over about ``1 / RUN_WEIGHT`` days).
    run_variance: float | None = None


@dataclass(frozen=True, slots=True)
class DemandPlan:
    """The daily plan of one slot: use per day over the horizon, the horizon, the safety stock."""

    daily_use: float
    horizon_days: float
    safety_stock: float

    @property
    def reorder_point(self) -> float:
        """Stock at or below which the slot orders: use over the horizon plus the safety stock."""
        return self.daily_use * self.horizon_days + self.safety_stock


def observe_use(
    estimate: DemandEstimate, *, consumed_total: float, last_reading_at: datetime | None
) -> DemandEstimate:
    """Append the use since the last observation to the history, a day at a time.

    ``consumed_total`` is the slot's cumulative use as of its newest reading, ``last_reading_at``.
    The first call only sets the marks; a call with no newer reading changes nothing; less than half a
    day waits for the next visit. A period of several days (the device was offline) is spread evenly.
    """
    if last_reading_at is None or not math.isfinite(consumed_total):
        return estimate
    if estimate.observed_at is None or estimate.consumed_mark is None:
        return replace(estimate, observed_at=last_reading_at, consumed_mark=consumed_total)
    elapsed = (last_reading_at - estimate.observed_at).total_seconds() / SECONDS_PER_DAY
    if elapsed < 0.5:
        return estimate
    used = max(consumed_total - estimate.consumed_mark, 0.0)
    days = max(1, round(elapsed))
    per_day = used / elapsed
    history = (*estimate.history, *([per_day] * min(days, HISTORY_DAYS)))[-HISTORY_DAYS:]
    return replace(
        estimate,
        history=history,
        observed_at=last_reading_at,
        consumed_mark=consumed_total,
        run_variance=_remember_runs(estimate.run_variance, history, last_reading_at, min(days, HISTORY_DAYS)),
    )


def _remember_runs(
    previous: float | None, history: tuple[float, ...], last_day: datetime, new_days: int
) -> float | None:
    """Blend the newest run of ``RUN_DAYS`` days' deviation from the typical day into the long memory.

    Guests, a party, a few busy days come rarely, and a four-week history often shows none: remembered
    for months, they still size the safety stock of a household that has them.
    """
    active = _active_days(history)
    if len(active) < RUN_DAYS + MIN_HISTORY_DAYS or active[-1] != len(history) - 1:
        return previous
    typical = _mean([history[i] for i in active])
    if typical <= 0:
        return previous
    # A weekly pattern is expected use, not a burst: compare each day with its weekday's typical.
    factors = _weekday_factors(history, active, last_day.weekday())
    last, last_weekday = len(history) - 1, last_day.weekday()

    def expected(index: int) -> float:
        if factors is None:
            return typical
        return typical * factors[(last_weekday - (last - index)) % 7]

    run = sum(history[i] - expected(i) for i in active[-RUN_DAYS:])
    observed = (run / typical) ** 2 / RUN_DAYS
    kept = (1.0 - RUN_WEIGHT) ** new_days
    return observed if previous is None else kept * previous + (1.0 - kept) * observed


def learn_lead_time(
    estimate: DemandEstimate, *, order_id: str, placed_at: datetime, estimated_delivery: datetime
) -> DemandEstimate:
    """Blend one order's lead time (DRS's estimated delivery date minus placement) into the estimate.

    Each order counts once (``lead_time_order``); implausible samples are ignored.
    """
    if order_id == estimate.lead_time_order:
        return estimate
    sample = (estimated_delivery - placed_at).total_seconds() / SECONDS_PER_DAY
    if not MIN_LEAD_DAYS <= sample <= MAX_LEAD_DAYS:
        return replace(estimate, lead_time_order=order_id)
    mean, spread = estimate.lead_time_days, estimate.lead_time_spread
    if mean is None:
        return replace(estimate, lead_time_days=sample, lead_time_spread=0.0, lead_time_order=order_id)
    deviation = abs(sample - mean)
    return replace(
        estimate,
        lead_time_days=mean + LEAD_TIME_WEIGHT * (sample - mean),
        lead_time_spread=(spread or 0.0) + LEAD_TIME_WEIGHT * (deviation - (spread or 0.0)),
        lead_time_order=order_id,
    )


def active_days(history: tuple[float, ...]) -> list[int]:
    """Indexes of the history's days that are not part of an absence (``ABSENCE_DAYS`` idle in a row)."""
    return list(_active_days(tuple(history)))


# The daily visit asks about one history several times (use, runs, plan): computed once.
@lru_cache(maxsize=1024)
def _active_days(history: tuple[float, ...]) -> tuple[int, ...]:
    positive = sorted(use for use in history if use > 0)
    if not positive:
        return ()
    idle_below = IDLE_SHARE * positive[len(positive) // 2]
    active: list[int] = []
    run: list[int] = []
    for index, use in enumerate(history):
        if use <= idle_below:
            run.append(index)
            continue
        if len(run) < ABSENCE_DAYS:
            active.extend(run)
        run = []
        active.append(index)
    # An idle run still going on counts as absence as soon as it is long enough, as it would later.
    if len(run) < ABSENCE_DAYS:
        active.extend(run)
    return tuple(sorted(active))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _sd(values: list[float], centre: float) -> float:
    if len(values) < 2:
        return 0.0
    return math.sqrt(sum((v - centre) ** 2 for v in values) / (len(values) - 1))


def weekday_factors(
    history: tuple[float, ...], active: Sequence[int], last_day: datetime
) -> tuple[float, ...] | None:
    """Use of each weekday (Monday 0) relative to the mean, or None when the history shows no weekly
    pattern beyond noise (weekend and weekday use compared, ``WEEKLY_Z`` standard errors). The last day
    of ``history`` is ``last_day``'s; ``active`` its days that count (``active_days``)."""
    return _weekday_factors(tuple(history), tuple(active), last_day.weekday())


@lru_cache(maxsize=1024)
def _weekday_factors(
    history: tuple[float, ...], active: tuple[int, ...], last_weekday: int
) -> tuple[float, ...] | None:
    if len(active) < WEEKLY_MIN_DAYS:
        return None
    last = len(history) - 1
    weekday = [(last_weekday - (last - index)) % 7 for index in range(len(history))]
    weekend = [history[i] for i in active if weekday[i] >= 5]
    weekdays = [history[i] for i in active if weekday[i] < 5]
    if len(weekend) < 2 or len(weekdays) < 4:
        return None
    mean_end, mean_week = _mean(weekend), _mean(weekdays)
    error = math.hypot(
        _sd(weekend, mean_end) / math.sqrt(len(weekend)), _sd(weekdays, mean_week) / math.sqrt(len(weekdays))
    )
    if abs(mean_end - mean_week) <= WEEKLY_Z * error:
        return None
    overall = (2 * mean_end + 5 * mean_week) / 7
    if overall <= 0:
        return None
    return tuple((mean_end if day >= 5 else mean_week) / overall for day in range(7))


def plan(
    estimate: DemandEstimate,
    *,
    now: datetime,
    prior_lead_time_days: float,
    package_quantity: float | None = None,
) -> DemandPlan | None:
    """The slot's plan for the coming day; None until the history has ``MIN_HISTORY_DAYS`` active days
    (or shows no use at all), so the policy's fixed rule applies. ``package_quantity`` (the slot's
    full quantity) tells how many orders a month the slot makes, which sets the service level."""
    history = estimate.history
    active = _active_days(history)
    if len(active) < MIN_HISTORY_DAYS or estimate.observed_at is None:
        return None
    last_day = estimate.observed_at
    factors = _weekday_factors(history, active, last_day.weekday())
    last, last_weekday = len(history) - 1, last_day.weekday()

    def factor(index: int) -> float:
        if factors is None:
            return 1.0
        return factors[(last_weekday - (last - index)) % 7]

    # Deseasonalised daily use of the active days, newest last.
    level_use = [history[i] / factor(i) for i in active]
    long = level_use[-LEVEL_DAYS:]
    level = _mean(long)
    spread = _sd(long, level)
    # A rise is followed from the last RECENT_DAYS (running dry is the costly error), a fall only once
    # a week shows it (ordering a little early is the cheap one).
    rising = _mean(level_use[-RECENT_DAYS:])
    falling = _mean(level_use[-FALL_DAYS:])
    if rising - level > CHANGE_Z * spread / math.sqrt(min(RECENT_DAYS, len(level_use))):
        level = rising
    elif level - falling > CHANGE_Z * spread / math.sqrt(min(FALL_DAYS, len(level_use))):
        level = falling
    if level <= 0:
        return None
    residuals = [history[i] - level * factor(i) for i in active[-LEVEL_DAYS:]]
    daily_sd = math.sqrt(sum(r * r for r in residuals) / max(len(residuals) - 1, 1))
    # The level itself is uncertain: its standard error, carried over the horizon.
    level_error = daily_sd / math.sqrt(len(residuals))

    lead = estimate.lead_time_days if estimate.lead_time_days is not None else prior_lead_time_days
    lead_spread = math.hypot(estimate.lead_time_spread or 0.0, LATE_ALLOWANCE_DAYS)
    horizon = lead + REVIEW_DAYS
    # Weekday-weighted mean use over the coming horizon (whole days, the part day pro rata).
    weights, day, left = 0.0, 0, horizon
    while left > 0:
        share = min(left, 1.0)
        weekday = (now + timedelta(days=day)).weekday()
        weights += share * (factors[weekday] if factors is not None else 1.0)
        left -= share
        day += 1
    daily_use = level * weights / horizon
    # Use over the horizon varies more than independent days would say when busy days come in runs
    # (guests, a change of habit): take the spread of the history's own horizon-long runs if larger.
    runs = _run_variance([history[i] - level * factor(i) for i in active], horizon)
    remembered = horizon * (estimate.run_variance or 0.0) * daily_use**2
    use_variance = max(horizon * daily_sd**2, runs, remembered)
    variance = use_variance + (horizon * level_error) ** 2 + (daily_use * lead_spread) ** 2
    safety = service_z(daily_use, package_quantity) * math.sqrt(variance)
    return DemandPlan(daily_use=daily_use, horizon_days=horizon, safety_stock=safety)


def service_z(daily_use: float, package_quantity: float | None) -> float:
    """Standard deviations of safety stock for a slot making ``30 * daily_use / package`` orders a month.

    The promise is per month (at most ``MONTHLY_RISK`` of slot-months dry), so a slot that orders often
    needs a higher level per order and one that orders twice a year a lower one.
    """
    if not package_quantity or package_quantity <= 0 or daily_use <= 0:
        return SERVICE_Z
    orders_a_month = 30.0 * daily_use / package_quantity
    risk = min(max(MONTHLY_RISK / orders_a_month, MIN_ORDER_RISK), MAX_ORDER_RISK)
    return NormalDist().inv_cdf(1.0 - risk)


def _run_variance(residuals: list[float], horizon: float) -> float:
    """Variance of the sum of ``horizon`` days of use, from the residuals' consecutive runs."""
    width = max(1, round(horizon))
    if len(residuals) < width + MIN_HISTORY_DAYS:
        return 0.0
    sums = [sum(residuals[i : i + width]) for i in range(len(residuals) - width + 1)]
    centre = _mean(sums)
    return _sd(sums, centre) ** 2 * horizon / width
