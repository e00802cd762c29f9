"""Order lifecycle per slot: allowed transitions, cooldowns, stale events."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drs_core.domain.models import OrderState, SlotOrder
from drs_core.domain.order_lifecycle import (
    CUSTOMER_CANCEL_COOLDOWN,
    RANK,
    Change,
    OrderEvent,
    apply,
    delivery_overdue,
    is_open,
    on_refill,
)
from drs_core.errors import InvalidTransition

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ID = "amzn1.dash.v2.o.A"


def run(*changes: Change, start: SlotOrder | None = None) -> SlotOrder:
    order = start or SlotOrder()
    for change in changes:
        order = apply(order, change)
    return order


def test_happy_path_none_requested_placed_shipped_none():
    edd = T0 + timedelta(days=3)
    order = run(
        Change(OrderEvent.CLAIM, T0),
        Change(OrderEvent.PLACE, T0, ID, edd),
        Change(OrderEvent.SHIP, T0 + timedelta(days=1), ID),
    )
    assert (order.state, order.instance_id, order.estimated_delivery_date) == (OrderState.SHIPPED, ID, edd)
    assert run(Change(OrderEvent.DELIVER, T0 + timedelta(days=3), ID), start=order) == SlotOrder()


def test_customer_cancel_starts_a_five_day_cooldown_and_counts():
    order = run(
        Change(OrderEvent.CLAIM, T0), Change(OrderEvent.PLACE, T0, ID), Change(OrderEvent.CANCEL, T0, ID)
    )
    assert order.state is OrderState.CANCELLED
    assert order.cooldown_until == T0 + CUSTOMER_CANCEL_COOLDOWN
    assert order.cancels_since_refill == 1
    with pytest.raises(InvalidTransition):
        apply(order, Change(OrderEvent.CLAIM, T0 + timedelta(days=4)))
    assert apply(order, Change(OrderEvent.CLAIM, T0 + timedelta(days=5))).state is OrderState.REQUESTED


def test_test_order_cancel_has_no_cooldown():
    order = run(
        Change(OrderEvent.CLAIM, T0),
        Change(OrderEvent.PLACE, T0, ID),
        Change(OrderEvent.CANCEL, T0, ID, customer_cancel=False),
    )
    assert (order.state, order.cooldown_until, order.cancels_since_refill) == (OrderState.CANCELLED, None, 0)


def test_refill_delivers_a_shipped_order_and_resets_the_cancel_count():
    shipped = SlotOrder(OrderState.SHIPPED, ID, cancels_since_refill=2)
    assert on_refill(shipped, T0) == SlotOrder()
    placed = SlotOrder(OrderState.PLACED, ID, cancels_since_refill=1)
    assert on_refill(placed, T0) == SlotOrder(OrderState.PLACED, ID)


def test_order_in_progress_is_adopted_from_requested():
    order = run(Change(OrderEvent.CLAIM, T0), Change(OrderEvent.PLACE, T0, ID))
    assert (order.state, order.instance_id) == (OrderState.PLACED, ID)


def test_events_about_another_order_are_stale():
    placed = SlotOrder(OrderState.PLACED, ID)
    with pytest.raises(InvalidTransition):
        apply(placed, Change(OrderEvent.CANCEL, T0, "amzn1.dash.v2.o.OLD"))
    with pytest.raises(InvalidTransition):
        apply(placed, Change(OrderEvent.SHIP, T0, "amzn1.dash.v2.o.OLD"))


def test_late_order_placed_after_shipped_is_rejected():
    shipped = SlotOrder(OrderState.SHIPPED, ID)
    with pytest.raises(InvalidTransition):
        apply(shipped, Change(OrderEvent.PLACE, T0, ID))


def test_delivery_is_overdue_after_estimated_date_plus_grace():
    order = SlotOrder(OrderState.SHIPPED, ID, estimated_delivery_date=T0)
    assert not delivery_overdue(order, T0 + timedelta(days=1))
    assert delivery_overdue(order, T0 + timedelta(days=2))


changes = st.builds(
    Change,
    event=st.sampled_from(OrderEvent),
    at=st.integers(0, 30).map(lambda d: T0 + timedelta(days=d)),
    instance_id=st.sampled_from([None, ID, "amzn1.dash.v2.o.B"]),
    customer_cancel=st.booleans(),
)


@given(st.lists(changes, max_size=30))
def test_any_sequence_keeps_the_order_consistent(sequence):
    # Given any sequence of events, applying the ones that are allowed
    order = SlotOrder()
    for change in sequence:
        before = order
        try:
            order = apply(order, change)
        except InvalidTransition:
            assert order == before
            continue
        # Then an open order always has been claimed or identified, cancels never go down, and the
        # order only moves forward unless a new order starts or it closes.
        assert order.cancels_since_refill >= before.cancels_since_refill or change.event is OrderEvent.DELIVER
        if order.state in (OrderState.PLACED, OrderState.SHIPPED) and change.instance_id:
            assert order.instance_id is not None
        moves_forward = RANK[order.state] >= RANK[before.state]
        starts_new = not is_open(before.state) and change.event in (OrderEvent.CLAIM, OrderEvent.PLACE)
        assert moves_forward or starts_new or change.event in (OrderEvent.RELEASE, OrderEvent.DELIVER)
