"""Replenishment quality: how often a customer runs dry, for a naive policy, this project's, and an oracle.

A seeded fleet (``SLOTS`` slots, ``DAYS`` measured days after a ``WARMUP_DAYS`` run-in, hour by hour)
with the consumption patterns a device maker meets. Every policy sees the same world: the same use,
the same readings (the device's reporting times and offline gaps) and, for its k-th order, the same
delivery. The customer loads the new package when the slot runs dry (at once if it is on hand, else
when the parcel arrives).

- **naive**: an order when a reading shows 20 % of a full slot or less (the device libraries' fixed
  threshold);
- **this project**: the shipped decision code, not a copy. Daily, per slot, what the daily visit runs
  (``forecast.update_daily_rate`` for the rate, ``estimation.observe_use`` / ``learn_lead_time`` /
  ``plan`` for the demand estimate, ``reorder_policy.reorder_point`` for the stored quantity); per
  reading, the hot path's comparison of the reported level with that stored reorder level (what the
  DynamoDB condition does); and ``reorder_policy.decide`` on every slot the comparison flags, as the
  reorder function does. Only the world (use, readings, deliveries) is vectorised;
- **oracle**: knows the future use and its parcel's delivery time, and orders so that the parcel
  arrives with one day of stock left.

Figures per policy and pattern: stockout hours per slot-month (slot empty, nothing on hand), share of
slot-months with any stockout, orders per slot-month, earliness (days of stock left in the slot, at the
actual use, when a parcel arrives), and early orders (placed with more than ``EARLY_ORDER_DAYS`` of
stock left: the orders a customer cancels; "cancels avoided" is the naive policy's count minus this).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np

from bench.table import print_table
from drs_core.domain import estimation
from drs_core.domain.forecast import update_daily_rate
from drs_core.domain.models import DeviceStatus, Slot, SlotOrder, SlotPolicy
from drs_core.domain.reorder_policy import decide, expected_stock, reorder_point

SEED = 17
SLOTS = 2_000
DAYS = 180
WARMUP_DAYS = 28  # the fleet is in service: the run-in is simulated but not counted
HOURS = (WARMUP_DAYS + DAYS) * 24
FULL = 100.0  # units in a full slot (the figures are scale-free)
NAIVE_THRESHOLD = 0.2
EARLY_ORDER_DAYS = 14.0
VISIT_HOUR = 3  # the daily report visit (the worker's hour for the slot's bucket)
DAY0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
MAX_ORDERS = 120
PATTERNS = ("steady", "noisy", "weekly", "bursts", "vacation", "trend", "heavy", "light")
POLICIES = ("naive", "this project", "oracle")
# Share of the day's use in each hour: nothing at night, a morning and an evening peak.
HOURLY = np.array([0, 0, 0, 0, 0, 0, 1, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 3, 4, 4, 3, 2, 1, 0], dtype=float)
HOURLY /= HOURLY.sum()

# Targets of the issue: shipped stockout hours at most 10 % of naive's and 1 h per slot-month, no
# pattern with more than 2 % of slot-months dry, mean earliness at most the oracle's + 2 days.
TARGET_RATIO_TO_NAIVE = 0.10
TARGET_HOURS_PER_SLOT_MONTH = 1.0
TARGET_DRY_SHARE = 0.02
TARGET_EARLINESS_OVER_ORACLE = 2.0


@dataclass(frozen=True)
class World:
    """What every policy shares: hourly use, reading times, and each slot's k-th delivery."""

    pattern: np.ndarray  # (SLOTS,) index into PATTERNS
    use: np.ndarray  # (SLOTS, HOURS) units wanted in each hour
    cumulative: np.ndarray  # (SLOTS, HOURS + 1) use before each hour
    reads: np.ndarray  # (HOURS, SLOTS) bool: the device reports its level at the end of this hour
    promised: np.ndarray  # (SLOTS, MAX_ORDERS) DRS's estimated lead time of the k-th order, hours
    late: np.ndarray  # (SLOTS, MAX_ORDERS) hours the k-th parcel arrives after DRS's estimate
    start: np.ndarray  # (SLOTS,) stock at the start


def build_world(seed: int = SEED, slots: int = SLOTS) -> World:
    """The seeded world: consumption patterns, readings with offline gaps, deliveries."""
    rng = np.random.default_rng(seed)
    days = WARMUP_DAYS + DAYS
    pattern = np.arange(slots) % len(PATTERNS)
    days_per_pack = rng.uniform(14, 40, slots)
    heavy, light = pattern == PATTERNS.index("heavy"), pattern == PATTERNS.index("light")
    days_per_pack[heavy] = rng.uniform(7, 12, heavy.sum())
    days_per_pack[light] = rng.uniform(60, 120, light.sum())
    rate = FULL / days_per_pack

    def gamma(cv: float, shape: tuple[int, ...]) -> np.ndarray:
        k = 1 / cv**2
        return rng.gamma(k, 1 / k, shape)

    cv = np.full(slots, 0.15)
    cv[pattern == PATTERNS.index("steady")] = 0.08
    cv[pattern == PATTERNS.index("noisy")] = 0.6
    cv[pattern == PATTERNS.index("heavy")] = 0.2
    cv[pattern == PATTERNS.index("light")] = 0.3
    k = (1 / cv**2)[:, None]
    daily = rng.gamma(np.broadcast_to(k, (slots, days)), 1 / k)
    weekday = (np.arange(days) + DAY0.weekday()) % 7
    weekly = pattern == PATTERNS.index("weekly")
    daily[weekly] *= np.where(weekday >= 5, 1.75, 0.7)[None, :]
    for s in np.flatnonzero(pattern == PATTERNS.index("bursts")):
        # Guests about once every two months, for two to four days, using two and a half times as much.
        for start in np.flatnonzero(rng.random(days) < 0.015):
            daily[s, start : start + rng.integers(2, 5)] *= 2.5
    for s in np.flatnonzero(pattern == PATTERNS.index("vacation")):
        for _ in range(rng.integers(1, 3)):
            start = rng.integers(WARMUP_DAYS, days - 7)
            daily[s, start : start + rng.integers(7, 22)] = 0.0
    for s in np.flatnonzero(pattern == PATTERNS.index("trend")):
        change = rng.integers(WARMUP_DAYS + 14, days - 30)
        daily[s, change:] *= 2.0 if rng.random() < 0.5 else 0.5
    use = (rate[:, None] * daily)[:, :, None] * HOURLY[None, None, :]
    use = use.reshape(slots, days * 24)
    cumulative = np.zeros((slots, days * 24 + 1))
    np.cumsum(use, axis=1, out=cumulative[:, 1:])

    # Readings: every 6 hours at the slot's own phase, one in ten missing, and offline spells of 1-3 days.
    hours = np.arange(days * 24)
    phase = rng.integers(0, 6, slots)
    reads = ((hours[None, :] + phase[:, None]) % 6 == 0) & (rng.random((slots, days * 24)) > 0.1)
    for s, day in zip(*np.nonzero(rng.random((slots, days)) < 0.01), strict=True):
        reads[s, day * 24 : (day + rng.integers(1, 3)) * 24] = False

    # Deliveries: DRS's estimate is the customer's usual lead time (2-4 days, 6 for one address in ten),
    # a few hours either way per order; one parcel in ten arrives a day after that estimate, one in fifty
    # two days after.
    usual = rng.choice([2.0, 3.0, 4.0, 6.0], slots, p=[0.3, 0.4, 0.2, 0.1])
    promised = (usual[:, None] + rng.uniform(-0.25, 0.25, (slots, MAX_ORDERS))) * 24
    draw = rng.random((slots, MAX_ORDERS))
    late = np.where(draw < 0.10, 24.0, 0.0) + np.where(draw < 0.02, 24.0, 0.0)
    start = FULL * rng.uniform(0.5, 1.0, slots)
    return World(pattern, use, cumulative, np.ascontiguousarray(reads.T), promised, late, start)


@dataclass
class Tally:
    """One policy's outcome, per slot."""

    dry_hours: np.ndarray
    dry_months: np.ndarray  # (SLOTS, months) bool
    orders: np.ndarray
    early_orders: np.ndarray
    earliness: list[list[float]] = field(default_factory=list)  # per slot, days at each arrival


def _hours_until_dry(world: World, slot: int, hour: int, stock: float) -> float:
    """Hours from the start of ``hour`` until ``stock`` is used up at the slot's actual use."""
    row = world.cumulative[slot]
    target = row[hour] + stock
    end = int(np.searchsorted(row, target, side="left"))
    if end < len(row):
        return float(end - hour)
    # Beyond the simulated days: the slot's last four weeks' use goes on.
    hourly = (row[-1] - row[-1 - 28 * 24]) / (28 * 24)
    beyond = (target - row[-1]) / hourly if hourly > 0 else 24 * 365.0
    return float(len(row) - 1 - hour + beyond)


class _ShippedPolicy:
    """The shipped decision code, run the way production runs it: daily upkeep, per-reading compare."""

    def __init__(self, world: World) -> None:
        self.policy = SlotPolicy()
        self.estimates = [estimation.DemandEstimate() for _ in range(len(world.start))]
        self.rates: list[float | None] = [None] * len(world.start)
        self.snapshot = [(0.0, -1)] * len(world.start)  # (observed use total, hour) at the last roll
        self.planned: list[float | None] = [None] * len(world.start)

    def daily(
        self, hour: int, observed_use: np.ndarray, last_read: np.ndarray, open_order: np.ndarray
    ) -> np.ndarray:
        """The daily visit of every slot; returns the reorder points for the coming day."""
        now = DAY0 + timedelta(hours=hour)
        points = np.empty(len(self.estimates))
        for s in range(len(self.estimates)):
            read_hour = int(last_read[s])
            total = float(observed_use[s])
            seen, at = self.snapshot[s]
            if read_hour >= 0 and at >= 0 and read_hour - at >= 1:
                self.rates[s] = update_daily_rate(self.rates[s], total - seen, (read_hour - at) * 3600.0)
            if read_hour >= 0 and read_hour != at:
                self.snapshot[s] = (total, read_hour)
            reading_at = DAY0 + timedelta(hours=read_hour + 1) if read_hour >= 0 else None
            self.estimates[s] = estimation.observe_use(
                self.estimates[s], consumed_total=total, last_reading_at=reading_at
            )
            if not open_order[s]:
                # With an order open nothing is decided on the point; production recomputes it anyway.
                planned = estimation.plan(
                    self.estimates[s],
                    now=now,
                    prior_lead_time_days=self.policy.lead_time_days,
                    package_quantity=FULL,
                )
                self.planned[s] = planned.reorder_point if planned is not None else None
            points[s] = reorder_point(FULL, self.policy, self.rates[s], self.planned[s])
        return points

    def silent_and_due(
        self, hour: int, observed: np.ndarray, last_read: np.ndarray, slots: np.ndarray
    ) -> list[int]:
        """The slots the daily visit flags (the stock expected now is at or below the point: the device
        was silent) and the reorder function then orders: ``decide`` on the slot as last reported."""
        now = DAY0 + timedelta(hours=hour)
        ordered = []
        for s in slots:
            if last_read[s] < 0:
                continue
            state = self.slot(int(s), float(observed[s]), 0.0, DAY0 + timedelta(hours=int(last_read[s]) + 1))
            point = reorder_point(FULL, self.policy, self.rates[s], self.planned[s])
            if expected_stock(state, now) <= point and decide(DeviceStatus.LINKED, state, now).reorder:
                ordered.append(int(s))
        return ordered

    def slot(self, slot: int, remaining: float, on_hand: float, last_reading_at: datetime | None) -> Slot:
        """The slot as the reorder function reads it."""
        return Slot(
            serial="bench",
            slot_id=str(slot),
            subscribed=True,
            original_quantity=FULL,
            remaining_quantity=remaining,
            on_hand_quantity=on_hand,
            daily_consumption=self.rates[slot],
            order=SlotOrder(),
            policy=self.policy,
            planned_reorder_point=self.planned[slot],
            last_reading_at=last_reading_at,
        )

    def learn(self, slot: int, order: int, placed_hour: int, promised_hours: float) -> None:
        """DRS's estimated delivery date of a new order, as the daily visit sees it."""
        placed = DAY0 + timedelta(hours=placed_hour)
        self.estimates[slot] = estimation.learn_lead_time(
            self.estimates[slot],
            order_id=str(order),
            placed_at=placed,
            estimated_delivery=placed + timedelta(hours=promised_hours),
        )

    def decide(self, slot: int, hour: int, remaining: float, on_hand: float) -> bool:
        """The reorder function's decision on a slot the hot path flagged."""
        now = DAY0 + timedelta(hours=hour)
        return decide(DeviceStatus.LINKED, self.slot(slot, remaining, on_hand, now), now).reorder


def simulate(world: World, policy: str) -> Tally:
    """Play ``policy`` through the world, hour by hour (every slot at once)."""
    slots = len(world.start)
    months = DAYS // 30
    remaining = world.start.copy()
    on_hand = np.zeros(slots)
    open_order = np.zeros(slots, dtype=bool)
    arrival = np.full(slots, -1)
    orders = np.zeros(slots, dtype=int)
    observed = world.start.copy()  # level at the last reading
    observed_use = np.zeros(slots)  # use the readings have shown, cumulative
    last_read = np.full(slots, -1)
    # A delivered order stays open for the backend until a reading shows the slot after it (the refill, or
    # the parcel on hand): DRS sends no "delivered".
    unseen_delivery = np.zeros(slots, dtype=bool)
    # Stock on hand as the backend knows it: the parcel from its delivery, until a reading shows it loaded.
    known_on_hand = np.zeros(slots)
    tally = Tally(np.zeros(slots), np.zeros((slots, months), dtype=bool), np.zeros(slots), np.zeros(slots))
    tally.earliness = [[] for _ in range(slots)]
    level = np.full(slots, NAIVE_THRESHOLD * FULL)
    shipped = _ShippedPolicy(world) if policy == "this project" else None
    oracle_at = np.full(slots, -1)  # the oracle's planned order hour for the current cycle (-1: plan it)
    warmup = WARMUP_DAYS * 24
    counted = np.arange(slots)

    def place(s: int, hour: int) -> None:
        k = orders[s]
        open_order[s] = True
        arrival[s] = hour + 1 + math.ceil(world.promised[s, k] + world.late[s, k])
        if hour >= warmup:
            tally.orders[s] += 1
            left = _hours_until_dry(world, s, hour + 1, remaining[s] + on_hand[s]) / 24
            if left > EARLY_ORDER_DAYS:
                tally.early_orders[s] += 1
        if shipped is not None:
            shipped.learn(s, int(k), hour, float(world.promised[s, k]))
        orders[s] = k + 1

    for hour in range(HOURS):
        # Parcels arriving at the start of the hour; an empty slot is loaded at once.
        for s in np.flatnonzero(open_order & (arrival == hour)):
            open_order[s] = False
            unseen_delivery[s] = True
            known_on_hand[s] += FULL
            if hour >= warmup:
                tally.earliness[s].append(_hours_until_dry(world, s, hour, remaining[s]) / 24)
            if remaining[s] <= 0:
                remaining[s] = FULL
            else:
                on_hand[s] += FULL
        if shipped is not None and hour % 24 == VISIT_HOUR:
            level = shipped.daily(hour, observed_use, last_read, open_order)
            idle = counted[~open_order & ~unseen_delivery & (known_on_hand <= 0)]
            for s in shipped.silent_and_due(hour, observed, last_read, idle):
                place(s, hour)
        if policy == "oracle":
            # Once no order is open (DRS allows one per slot), plan the next so that it arrives one day
            # before the stock in the slot and on hand runs out.
            for s in np.flatnonzero(~open_order & (oracle_at < 0)):
                dry_in = _hours_until_dry(world, s, hour, remaining[s] + on_hand[s])
                lead = math.ceil(world.promised[s, orders[s]] + world.late[s, orders[s]]) + 1
                oracle_at[s] = max(hour, hour + int(dry_in) - 24 - lead)
            for s in np.flatnonzero(~open_order & (oracle_at == hour)):
                place(s, hour)
                oracle_at[s] = -1

        # The hour's use; a slot running dry is loaded from stock on hand.
        after = remaining - world.use[:, hour]
        dry = after <= 0
        load = dry & (on_hand > 0)
        remaining = np.where(load, after + on_hand, np.maximum(after, 0.0))
        on_hand = np.where(load, 0.0, on_hand)
        empty = (remaining <= 0) & (on_hand <= 0)
        if hour >= warmup:
            tally.dry_hours += empty
            tally.dry_months[empty, min((hour - warmup) // (30 * 24), months - 1)] = True

        # Readings at the end of the hour: the level, and what the hot path decides on it.
        reading = world.reads[hour]
        drop = np.where(reading, np.maximum(observed - remaining, 0.0), 0.0)
        observed_use += drop
        observed = np.where(reading, remaining, observed)
        last_read = np.where(reading, hour, last_read)
        unseen_delivery &= ~reading
        known_on_hand = np.where(reading, on_hand, known_on_hand)
        if policy == "oracle":
            continue
        flagged = counted[reading & ~open_order & (remaining + on_hand <= level)]
        for s in flagged:
            if shipped is None or shipped.decide(int(s), hour, float(remaining[s]), float(on_hand[s])):
                place(int(s), hour)
    return tally


@dataclass(frozen=True)
class Figures:
    """One policy's figures over a set of slots."""

    stockout_hours: float  # per slot-month
    dry_share: float  # of slot-months
    orders: float  # per slot-month
    earliness: float  # mean days
    early_orders: float  # per slot-month


def figures(tally: Tally, mask: np.ndarray) -> Figures:
    slot_months = mask.sum() * DAYS / 30
    arrivals = [days for s in np.flatnonzero(mask) for days in tally.earliness[s]]
    return Figures(
        stockout_hours=float(tally.dry_hours[mask].sum() / slot_months),
        dry_share=float(tally.dry_months[mask].mean()),
        orders=float(tally.orders[mask].sum() / slot_months),
        earliness=float(np.mean(np.maximum(arrivals, 0.0))) if arrivals else float("nan"),
        early_orders=float(tally.early_orders[mask].sum() / slot_months),
    )


@dataclass(frozen=True)
class Result:
    """Figures by policy, overall and by pattern, and how long the simulation took."""

    overall: dict[str, Figures]
    by_pattern: dict[str, dict[str, Figures]]
    seconds: float
    slots: int

    def goals(self) -> list[tuple[str, str, str, bool]]:
        """(goal, measured, target, holds) for the issue's four targets."""
        naive, ours, oracle = (self.overall[p] for p in POLICIES)
        ratio = ours.stockout_hours / naive.stockout_hours if naive.stockout_hours else 0.0
        worst = max(self.by_pattern.items(), key=lambda item: item[1]["this project"].dry_share)
        extra = ours.earliness - oracle.earliness
        return [
            (
                "stockout hours vs naive",
                f"{ratio:.3f}",
                f"≤ {TARGET_RATIO_TO_NAIVE}",
                ratio <= TARGET_RATIO_TO_NAIVE,
            ),
            (
                "stockout hours per slot-month",
                f"{ours.stockout_hours:.2f} h",
                f"≤ {TARGET_HOURS_PER_SLOT_MONTH:g} h",
                ours.stockout_hours <= TARGET_HOURS_PER_SLOT_MONTH,
            ),
            (
                f"slot-months dry, worst pattern ({worst[0]})",
                f"{worst[1]['this project'].dry_share:.1%}",
                f"≤ {TARGET_DRY_SHARE:.0%}",
                worst[1]["this project"].dry_share <= TARGET_DRY_SHARE,
            ),
            (
                "mean earliness minus the oracle's",
                f"{extra:+.2f} d",
                f"≤ +{TARGET_EARLINESS_OVER_ORACLE:g} d",
                extra <= TARGET_EARLINESS_OVER_ORACLE,
            ),
        ]


@cache
def measure(seed: int = SEED, slots: int = SLOTS) -> Result:
    """Build the world once and play the three policies through it."""
    started = time.perf_counter()
    world = build_world(seed, slots)
    tallies = {policy: simulate(world, policy) for policy in POLICIES}
    everyone = np.ones(slots, dtype=bool)
    overall = {policy: figures(tally, everyone) for policy, tally in tallies.items()}
    by_pattern = {
        name: {policy: figures(tally, world.pattern == index) for policy, tally in tallies.items()}
        for index, name in enumerate(PATTERNS)
    }
    return Result(overall, by_pattern, time.perf_counter() - started, slots)


def rows(result: Result) -> list[list[object]]:
    """The table's rows: every pattern, then all slots, each with the three policies."""
    naive_early = {name: figures_["naive"].early_orders for name, figures_ in result.by_pattern.items()}
    naive_early["all"] = result.overall["naive"].early_orders
    table: list[list[object]] = []
    groups = [*result.by_pattern.items(), ("all", result.overall)]
    for name, by_policy in groups:
        for policy in POLICIES:
            f = by_policy[policy]
            table.append(
                [
                    name if policy == POLICIES[0] else "",
                    policy,
                    f"{f.stockout_hours:.2f}",
                    f"{f.dry_share:.1%}",
                    f"{f.orders:.2f}",
                    f"{f.earliness:.2f}",
                    f"{f.early_orders:.3f}",
                    f"{naive_early[name] - f.early_orders:.3f}",
                ]
            )
    return table


def run() -> None:
    result = measure()
    print_table(
        f"Replenishment quality: {result.slots} slots x {DAYS} days (seed {SEED}, simulated in "
        f"{result.seconds:.1f} s); per slot-month",
        [
            "pattern",
            "policy",
            "stockout h",
            "months dry",
            "orders",
            "earliness d",
            "early orders",
            "cancels avoided",
        ],
        rows(result),
    )
    print_table(
        "Replenishment goals (this project's policy)",
        ["goal", "measured", "target", "holds"],
        [[goal, measured, target, "yes" if ok else "NO"] for goal, measured, target, ok in result.goals()],
    )
