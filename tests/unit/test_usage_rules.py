"""The pure rules of a usage reading (domain/usage.py): levels, staleness, refills, due, daily roll."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from drs_core.domain import usage
from drs_core.domain.models import Device, OrderState, ReadingKind, Slot, SlotOrder, SlotPolicy
from tests.support.usage_states import NOW, measured, reading


def test_a_level_older_than_the_newest_one_is_not_applied() -> None:
    # Given a slot whose newest level was observed at NOW
    state = measured(last_absolute_at=NOW)
    # When a level and a consumption observed a minute earlier arrive
    for kind in (ReadingKind.REMAINING, ReadingKind.CONSUMED):
        outcome = usage.apply_reading(state, reading(kind, 1, NOW - timedelta(minutes=1)), NOW)
        # Then neither applies
        assert not outcome.applied and outcome.state is state


def test_consumption_never_takes_a_slot_below_zero() -> None:
    # Given 10 left
    # When 15 are reported consumed
    outcome = usage.apply_reading(measured(), reading(ReadingKind.CONSUMED, 15), NOW)
    # Then the slot is empty, the last use is the reading's time, and the headroom follows
    assert (outcome.state.remaining, outcome.state.headroom, outcome.state.last_use_at) == (0, -2, NOW)


def test_a_rise_in_level_counts_as_stock_added_for_the_rate() -> None:
    # Given 10 left and nothing refilled since the snapshot
    # When the device reports 25 (the customer topped it up without a refill reading)
    outcome = usage.apply_reading(measured(), reading(ReadingKind.REMAINING, 25), NOW)
    # Then 15 were added, so the day's consumption is not hidden by the top-up
    assert outcome.state.refilled_since_snapshot == Decimal(15)


def test_a_refill_delivers_a_shipped_order_and_makes_older_levels_stale() -> None:
    # Given a shipped order with 4 on hand, after one customer cancel
    shipped = SlotOrder(OrderState.SHIPPED, "amzn1.dash.v2.o.1", cancels_since_refill=1)
    state = measured(remaining=Decimal(1), on_hand=Decimal(4), order=shipped)
    # When 4 units are loaded
    outcome = usage.apply_reading(state, reading(ReadingKind.REFILLED, 4), NOW)
    # Then the order is delivered, stock moved off hand, cancels start over
    after = outcome.state
    assert (after.order.state, after.order.instance_id, after.order.cancels_since_refill) == (
        OrderState.NONE,
        None,
        0,
    )
    assert (after.remaining, after.on_hand) == (Decimal(5), Decimal(0))
    # And the reorder level was recomputed for the stock now on hand (point 2, nothing on hand)
    assert (after.reorder_level, after.headroom) == (Decimal(2), Decimal(3))
    # And a level observed before the refill is stale
    assert usage.is_stale(after, reading(ReadingKind.REMAINING, 1, NOW - timedelta(seconds=1)))


def test_crossing_the_point_raises_due_once() -> None:
    # Given 3 left with a reorder level of 2
    state = measured(remaining=Decimal(3), headroom=Decimal(1))
    # When the level drops to 2 (at the point)
    first = usage.apply_reading(state, reading(ReadingKind.REMAINING, 2), NOW)
    # Then due is raised, the blind write would not have been exact
    assert first.due_raised and first.state.reorder_due
    assert not usage.fast_path_holds(state, reading(ReadingKind.REMAINING, 2), NOW)
    # And the next reading below the point changes nothing about due: the blind write is exact
    assert usage.fast_path_holds(first.state, reading(ReadingKind.REMAINING, 1), NOW)
    assert not usage.apply_reading(first.state, reading(ReadingKind.REMAINING, 1), NOW).due_raised


@pytest.mark.parametrize(
    ("changes", "may_order"),
    [
        ({}, True),
        ({"subscribed": False}, False),
        ({"policy": SlotPolicy(auto_reorder=False)}, False),
        ({"order": SlotOrder(OrderState.PLACED, "o")}, False),
        ({"order": SlotOrder(OrderState.SHIPPED, "o")}, False),
        ({"order": SlotOrder(OrderState.CANCELLED, "o")}, True),
        ({"order": SlotOrder(OrderState.CANCELLED, "o", cooldown_until=NOW + timedelta(days=1))}, False),
        ({"order": SlotOrder(OrderState.CANCELLED, "o", cancels_since_refill=2)}, False),
        ({"order": SlotOrder(OrderState.REQUESTED), "order_requested_at": NOW - timedelta(minutes=1)}, False),
        ({"order": SlotOrder(OrderState.REQUESTED), "order_requested_at": NOW - timedelta(minutes=16)}, True),
        ({"reorder_held_until": NOW + timedelta(hours=1)}, False),
        ({"reorder_held_until": NOW}, True),
    ],
)
def test_when_a_low_slot_may_be_proposed_for_an_order(changes: dict, may_order: bool) -> None:
    # Given a slot in one of the states the hot path can see
    state = measured(**changes)
    # When asked whether an order may be proposed now
    # Then only an open, fresh claim, an open order, cooldown, two cancels, a hold, no subscription or
    # automatic reordering off say no
    assert usage.may_raise_due(state, NOW) is may_order


def test_the_daily_roll_learns_the_rate_and_moves_the_reorder_point() -> None:
    # Given a snapshot of 10 a day old, 6 left at the last reading
    state = measured(
        remaining=Decimal(6),
        headroom=Decimal(4),
        snapshot_at=NOW - timedelta(days=1, hours=1),
        last_reading_at=NOW - timedelta(hours=1),
    )
    # When the next reading arrives
    outcome = usage.apply_reading(state, reading(ReadingKind.CONSUMED, 1), NOW)
    # Then the rate is 4 a day, the point 4 x (7 + 2) = 36, and 5 left is due
    after = outcome.state
    assert after.daily_consumption == pytest.approx(4.0)
    assert after.reorder_point == Decimal("36.0")
    assert after.reorder_due and outcome.due_raised
    # And the snapshot restarted at the last reading before this one
    assert (after.snapshot_remaining, after.snapshot_at) == (Decimal(6), NOW - timedelta(hours=1))


def test_an_idle_day_pulls_the_rate_down_and_a_long_idle_one_to_zero() -> None:
    # Given a rate of 4 a day and no consumption for a day, then for 2000 days
    day = measured(
        daily_consumption=4.0, snapshot_at=NOW - timedelta(days=2), last_reading_at=NOW - timedelta(days=1)
    )
    years = replace(day, snapshot_at=NOW - timedelta(days=2001))
    # When the snapshot rolls
    # Then the rate decays (0.7 kept per day), and a vanishing rate is stored as zero
    assert usage.roll_snapshot(day).daily_consumption == pytest.approx(2.8)
    assert usage.roll_snapshot(years).daily_consumption == 0.0


def test_a_period_shorter_than_an_hour_does_not_update_the_rate() -> None:
    # Given a snapshot taken 30 minutes before the last reading
    state = measured(
        daily_consumption=1.0,
        snapshot_at=NOW - timedelta(minutes=40),
        last_reading_at=NOW - timedelta(minutes=10),
        remaining=Decimal(5),
    )
    # When it rolls, Then the rate is unchanged
    assert usage.roll_snapshot(state).daily_consumption == 1.0


def test_refresh_raises_due_when_a_new_point_puts_the_slot_below_it() -> None:
    # Given 5 left, a point of 2, and a policy raised to 60 % (by the companion app: version moved on)
    state = measured(
        remaining=Decimal(5), headroom=Decimal(3), policy=SlotPolicy(threshold_fraction=0.6), version=8
    )
    # When the slot is refreshed
    after = usage.refresh(state, NOW)
    # Then the point is 6, the slot is due, and the fields are valid for the next version
    assert (after.reorder_point, after.headroom, after.reorder_due) == (Decimal("6.0"), Decimal("-1.0"), True)
    assert after.version == after.reorder_version == 9


def test_readings_far_in_the_future_are_refused() -> None:
    # Given the server's clock at NOW
    # When readings are observed 5 and 6 minutes ahead
    # Then 5 minutes of skew are tolerated, 6 are not
    assert usage.reading_problem(reading(ReadingKind.CONSUMED, 1, NOW + timedelta(minutes=5)), NOW) is None
    assert usage.reading_problem(reading(ReadingKind.CONSUMED, 1, NOW + timedelta(minutes=6)), NOW)


def test_a_devices_last_activity_is_its_newest_reading() -> None:
    # Given a device item with an old activity time and two slots read at different times
    device = Device("SN1", "M", last_active_at=NOW - timedelta(days=3))
    slots = [
        Slot("SN1", "A", last_reading_at=NOW - timedelta(hours=2)),
        Slot("SN1", "B", last_reading_at=NOW - timedelta(hours=1)),
        Slot("SN1", "C"),
    ]
    # When its last activity is asked for, Then it is the newest reading
    assert usage.last_active_at(device, slots) == NOW - timedelta(hours=1)
    assert usage.last_active_at(Device("SN2", "M"), [Slot("SN2", "A")]) is None
