"""UsageStore against moto DynamoDB: the compiled hot-path write agrees with the pure rules.

The property test is the contract of ``adapters.usage_store``: for any slot state and reading, DynamoDB
accepts the blind write exactly when ``domain.usage.fast_path_holds`` says so, and whichever path runs,
the stored item ends as ``domain.usage.apply_reading`` says.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drs_core import schema
from drs_core.adapters.items import (
    Attr,
    key_item,
    policy_attributes,
    present,
    slot_from_item,
    slot_order_attributes,
    str_av,
    time_av,
)
from drs_core.adapters.usage_store import UsageStore, state_from_item, usage_attributes
from drs_core.domain import usage
from drs_core.domain.models import OrderState, Reading, ReadingKind, SlotOrder, SlotPolicy
from drs_core.errors import UnknownSlot
from tests.conftest import STATE_TABLE
from tests.support.usage_states import NOW, measured, reading

TABLE = STATE_TABLE
SERIAL = "SN-USAGE"


@pytest.fixture(scope="module")
def store(dynamodb: Any) -> UsageStore:
    return UsageStore(TABLE, dynamodb=dynamodb)


def slot_item(state: usage.UsageState, slot_id: str = "Filter", *, subscribed: bool | None = None) -> dict:
    """The stored item of a slot in ``state``."""
    return {
        **key_item(schema.slot_key(SERIAL, slot_id)),
        **present(usage_attributes(state)),
        Attr.SUBSCRIBED: {"BOOL": state.subscribed if subscribed is None else subscribed},
        **policy_attributes(state.policy),
        **present(slot_order_attributes(state.order)),
        **present({Attr.ORDER_REQUESTED_AT: time_av(state.order_requested_at)}),
    }


def numeric(item: dict) -> dict:
    """An item with numbers compared by value ("5" == "5.0")."""
    return {name: Decimal(value["N"]) if "N" in value else value for name, value in item.items()}


def put(dynamodb: Any, item: dict) -> None:
    dynamodb.put_item(TableName=TABLE, Item=item)


def get(dynamodb: Any, slot_id: str = "Filter") -> dict:
    return dynamodb.get_item(
        TableName=TABLE, Key=key_item(schema.slot_key(SERIAL, slot_id)), ConsistentRead=True
    )["Item"]


# --- examples --------------------------------------------------------------------------------------


def test_a_consumed_delta_is_one_blind_write(dynamodb: Any, store: UsageStore) -> None:
    # Given a measured slot well above its reorder point
    put(dynamodb, slot_item(measured()))
    # When 3 units are consumed
    result = store.apply(SERIAL, "Filter", reading(ReadingKind.CONSUMED, 3), NOW)
    # Then the blind write took it: remaining and headroom moved together, last use recorded, no due
    stored = state_from_item(get(dynamodb))
    assert result.fast and result.applied
    assert (stored.remaining, stored.headroom, stored.last_use_at) == (Decimal(7), Decimal(5), NOW)
    assert stored.version == stored.reorder_version == 4
    assert not stored.reorder_due


def test_crossing_the_reorder_point_raises_due_through_the_exact_write(
    dynamodb: Any, store: UsageStore
) -> None:
    # Given a slot with 3 left and a reorder level of 2
    put(dynamodb, slot_item(measured(remaining=Decimal(3), headroom=Decimal(1))))
    # When the level drops to 1.5
    result = store.apply(SERIAL, "Filter", reading(ReadingKind.REMAINING, 1.5), NOW)
    # Then the blind write was refused and the exact one raised reorderDue
    assert not result.fast and result.due_raised
    assert slot_from_item(get(dynamodb)).remaining_quantity == 1.5
    assert get(dynamodb)[Attr.REORDER_DUE] == {"BOOL": True}
    # And a further reading below the point is a blind write again: due is raised once per need
    again = store.apply(
        SERIAL, "Filter", reading(ReadingKind.REMAINING, 1.0, NOW + timedelta(minutes=5)), NOW
    )
    assert again.fast and not again.due_raised


def test_an_older_absolute_level_is_acknowledged_but_not_applied(dynamodb: Any, store: UsageStore) -> None:
    # Given a slot whose newest absolute level was observed at NOW
    put(dynamodb, slot_item(measured(remaining=Decimal(6), headroom=Decimal(4), last_absolute_at=NOW)))
    before = get(dynamodb)
    # When a level observed an hour earlier arrives late
    result = store.apply(SERIAL, "Filter", reading(ReadingKind.REMAINING, 9, NOW - timedelta(hours=1)), NOW)
    # Then nothing was written
    assert not result.applied
    assert get(dynamodb) == before


def test_a_refill_delivers_a_shipped_order_and_takes_stock_off_hand(dynamodb: Any, store: UsageStore) -> None:
    # Given a slot almost empty, its order shipped and 10 units on hand
    shipped = SlotOrder(OrderState.SHIPPED, instance_id="amzn1.dash.v2.o.1", cancels_since_refill=1)
    put(
        dynamodb,
        slot_item(measured(remaining=Decimal(1), on_hand=Decimal(10), order=shipped, headroom=Decimal(-1))),
    )
    # When the customer loads the 10 units
    store.apply(SERIAL, "Filter", reading(ReadingKind.REFILLED, 10), NOW)
    # Then the order is delivered (NONE, cancels reset), the stock moved from on hand into the slot
    slot = slot_from_item(get(dynamodb))
    assert (slot.order.state, slot.order.instance_id, slot.order.cancels_since_refill) == (
        OrderState.NONE,
        None,
        0,
    )
    assert (slot.remaining_quantity, slot.on_hand_quantity) == (11.0, 0.0)
    # And the order's history is closed as delivered
    history = dynamodb.get_item(TableName=TABLE, Key=key_item(schema.order_key(SERIAL, "amzn1.dash.v2.o.1")))
    assert history["Item"][Attr.DELIVERED_AT] == str_av("2026-03-01T12:00:00.000Z")


def test_a_slot_written_by_others_gets_its_reorder_fields_recomputed(
    dynamodb: Any, store: UsageStore
) -> None:
    # Given a slot as linking creates it: no reorder fields, no readings yet
    put(
        dynamodb,
        {
            **key_item(schema.slot_key(SERIAL, "Filter")),
            Attr.SUBSCRIBED: {"BOOL": True},
            Attr.ORIGINAL_QTY: {"N": "20"},
            Attr.REMAINING_QTY: {"N": "0"},
            Attr.ON_HAND_QTY: {"N": "0"},
            Attr.ORDER_STATE: str_av("NONE"),
            Attr.VERSION: {"N": "1"},
            **policy_attributes(SlotPolicy(threshold_fraction=0.25)),
        },
    )
    # When the device reports its first level
    store.apply(SERIAL, "Filter", reading(ReadingKind.REMAINING, 20), NOW)
    # Then reorder point (25 % of 20), level and headroom exist, and the snapshot starts here
    stored = state_from_item(get(dynamodb))
    assert (stored.reorder_point, stored.reorder_level, stored.headroom) == (
        Decimal(5),
        Decimal(5),
        Decimal(15),
    )
    assert (stored.snapshot_remaining, stored.snapshot_at, stored.reorder_version) == (Decimal(20), NOW, 2)


def test_the_daily_snapshot_roll_updates_the_rate(dynamodb: Any, store: UsageStore) -> None:
    # Given a snapshot of 10 taken a day ago, 6 left since the last reading
    state = measured(
        remaining=Decimal(6),
        headroom=Decimal(4),
        snapshot_at=NOW - timedelta(days=1, minutes=1),
        last_reading_at=NOW - timedelta(minutes=1),
        last_absolute_at=NOW - timedelta(minutes=1),
    )
    put(dynamodb, slot_item(state))
    # When the next reading arrives
    store.apply(SERIAL, "Filter", reading(ReadingKind.REMAINING, 6), NOW)
    # Then ~4 a day is the rate, the reorder point follows it (4 x 9 days), and the snapshot restarted
    stored = state_from_item(get(dynamodb))
    assert stored.daily_consumption == pytest.approx(4.0)
    assert stored.reorder_point == pytest.approx(Decimal(36))
    assert stored.snapshot_at == NOW - timedelta(minutes=1)
    assert stored.last_use_at == NOW - timedelta(minutes=1)
    # And at 6 left with a 36-unit reorder point, the slot is due
    assert stored.reorder_due


def test_an_unknown_slot_is_refused_and_nothing_is_created(dynamodb: Any, store: UsageStore) -> None:
    # Given no slot "Ghost"
    # When a reading names it
    with pytest.raises(UnknownSlot):
        store.apply(SERIAL, "Ghost", Reading("Ghost", NOW, ReadingKind.CONSUMED, 1.0), NOW)
    # Then no item was created
    assert "Item" not in dynamodb.get_item(TableName=TABLE, Key=key_item(schema.slot_key(SERIAL, "Ghost")))


def test_restore_puts_a_blind_write_back(dynamodb: Any, store: UsageStore) -> None:
    # Given a slot changed by a blind write
    put(dynamodb, slot_item(measured()))
    before = get(dynamodb)
    result = store.apply(SERIAL, "Filter", reading(ReadingKind.CONSUMED, 1), NOW)
    assert result.fast
    # When the write is undone
    assert store.restore(SERIAL, "Filter", result.before, result.after)
    # Then the item is as it was
    assert numeric(get(dynamodb)) == numeric(before)


# --- the property ----------------------------------------------------------------------------------

amounts = st.decimals(min_value=0, max_value=40, places=2).map(lambda d: d.normalize() + 0)
times = st.integers(min_value=-48 * 60, max_value=5).map(lambda minutes: NOW + timedelta(minutes=minutes))
optional_times = st.none() | times


@st.composite
def states(draw: st.DrawFn) -> usage.UsageState:
    remaining, on_hand, original = (
        draw(amounts),
        draw(st.sampled_from([Decimal(0), Decimal(5)])),
        draw(amounts),
    )
    point = draw(amounts)
    consistent = draw(st.booleans())
    level = point - on_hand
    order_state = draw(st.sampled_from(list(OrderState)))
    return usage.UsageState(
        version=5,
        reorder_version=5 if consistent else draw(st.sampled_from([None, 4])),
        remaining=remaining,
        on_hand=on_hand,
        original=original,
        reorder_point=point,
        reorder_level=level,
        headroom=remaining - level,
        daily_consumption=draw(st.none() | st.just(0.0) | st.floats(min_value=1e-6, max_value=5)),
        last_absolute_at=draw(optional_times),
        last_reading_at=NOW - timedelta(hours=1),
        last_use_at=draw(optional_times),
        snapshot_remaining=draw(amounts),
        snapshot_at=draw(st.sampled_from([NOW - timedelta(hours=3), NOW - timedelta(days=2)])),
        refilled_since_snapshot=draw(st.sampled_from([Decimal(0), Decimal("2.5")])),
        subscribed=draw(st.booleans()),
        policy=SlotPolicy(threshold_fraction=0.2, auto_reorder=draw(st.booleans())),
        order=SlotOrder(
            order_state,
            instance_id="amzn1.dash.v2.o.9" if order_state is not OrderState.NONE else None,
            cooldown_until=draw(st.sampled_from([None, NOW - timedelta(days=1), NOW + timedelta(days=1)])),
            cancels_since_refill=draw(st.integers(min_value=0, max_value=2)),
        ),
        order_requested_at=draw(st.sampled_from([NOW - timedelta(minutes=1), NOW - timedelta(hours=1)]))
        if order_state is OrderState.REQUESTED
        else None,
        reorder_due=draw(st.booleans()),
        reorder_held_until=draw(st.sampled_from([None, NOW + timedelta(hours=1)])),
    )


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    kind = draw(st.sampled_from(list(ReadingKind)))
    amount = draw(amounts.filter(lambda d: d > 0 or kind is ReadingKind.REMAINING))
    original = draw(st.none() | st.sampled_from([10.0, 20.0]))
    return Reading("Filter", draw(times), kind, float(amount), original)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=states(), new=readings())
def test_the_blind_write_is_exactly_the_rule(dynamodb: Any, store: UsageStore, state, new) -> None:
    # Given any slot state
    put(dynamodb, slot_item(state))
    before = get(dynamodb)
    # When the blind write of any reading is tried
    attempt = store.try_fast(SERIAL, "Filter", new, NOW)
    # Then DynamoDB accepts it exactly when the rule says the blind write is exact
    assert attempt.accepted == usage.fast_path_holds(state, new, NOW)
    expected = usage.apply_reading(state_from_item(before), new, NOW)
    if attempt.accepted:
        # And the stored item is the rule's result
        assert numeric(get(dynamodb)) == numeric(slot_item(expected.state, subscribed=state.subscribed))
        assert expected.state.reorder_due == state.reorder_due
    else:
        # And a refused write changed nothing; the exact path then ends where the rule says
        assert get(dynamodb) == before
        result = store.apply(SERIAL, "Filter", new, NOW, first=attempt)
        wanted = slot_item(expected.state, subscribed=state.subscribed) if expected.applied else before
        assert numeric(get(dynamodb)) == numeric(wanted)
        assert result.due_raised == expected.due_raised
