"""Reorder policy: the reorder point and every reason never to reorder."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from drs_core.domain.models import DeviceStatus, OrderState, Slot, SlotOrder, SlotPolicy
from drs_core.domain.reorder_policy import Verdict, decide, reorder_point

NOW = datetime(2026, 3, 1, tzinfo=UTC)
qty = st.floats(min_value=0, max_value=1e5, allow_nan=False)
rates = st.none() | st.floats(min_value=0, max_value=1e3, allow_nan=False)
policies = st.builds(
    SlotPolicy,
    threshold_fraction=st.floats(min_value=0, max_value=1),
    lead_time_days=st.floats(min_value=0, max_value=30),
    safety_days=st.floats(min_value=0, max_value=10),
    auto_reorder=st.booleans(),
)
orders = st.builds(
    SlotOrder,
    state=st.sampled_from(OrderState),
    instance_id=st.none() | st.just("amzn1.dash.v2.o.x"),
    cooldown_until=st.none() | st.integers(-10, 10).map(lambda d: NOW + timedelta(days=d)),
    cancels_since_refill=st.integers(0, 3),
)
slots = st.builds(
    Slot,
    serial=st.just("SN1"),
    slot_id=st.just("Filter"),
    subscribed=st.booleans(),
    original_quantity=qty,
    remaining_quantity=qty,
    on_hand_quantity=qty,
    daily_consumption=rates,
    order=orders,
    policy=policies,
)


def full_slot(**changes) -> Slot:
    base = Slot(
        serial="SN1", slot_id="Filter", subscribed=True, original_quantity=100, remaining_quantity=100
    )
    return replace(base, **changes)


@given(slot=slots, status=st.sampled_from(DeviceStatus))
def test_never_reorders_an_unsubscribed_slot_an_open_order_or_an_unlinked_device(slot, status):
    verdict = decide(status, slot, NOW)
    if verdict.reorder:
        assert slot.subscribed
        assert slot.policy.auto_reorder
        assert status is DeviceStatus.LINKED
        assert slot.order.state in (OrderState.NONE, OrderState.CANCELLED)
        assert slot.order.cancels_since_refill < 2
        assert slot.order.cooldown_until is None or slot.order.cooldown_until <= NOW


@given(slot=slots)
def test_reorders_exactly_when_stock_is_at_or_below_the_reorder_point_if_nothing_blocks(slot):
    unblocked = replace(
        slot, subscribed=True, order=SlotOrder(), policy=replace(slot.policy, auto_reorder=True)
    )
    point = reorder_point(slot.original_quantity, slot.policy, slot.daily_consumption)
    stock = slot.remaining_quantity + slot.on_hand_quantity
    assert decide(DeviceStatus.LINKED, unblocked, NOW).reorder == (stock <= point)


def test_threshold_fraction_of_a_full_slot():
    # Given a 100-unit slot with the default 20 % threshold and no measured use
    assert decide(DeviceStatus.LINKED, full_slot(remaining_quantity=21), NOW).verdict is Verdict.ENOUGH_STOCK
    assert decide(DeviceStatus.LINKED, full_slot(remaining_quantity=20), NOW).verdict is Verdict.REORDER


def test_forecast_within_lead_time_reorders_above_the_threshold():
    # Given 50 units used at 6 a day: 8.3 days left, within 7 days lead + 2 safety
    slot = full_slot(remaining_quantity=50, daily_consumption=6.0)
    assert decide(DeviceStatus.LINKED, slot, NOW).reorder


def test_stock_on_hand_counts_as_remaining():
    slot = full_slot(remaining_quantity=5, on_hand_quantity=100)
    assert decide(DeviceStatus.LINKED, slot, NOW).verdict is Verdict.ENOUGH_STOCK


def test_cooldown_blocks_until_it_passes():
    order = SlotOrder(OrderState.CANCELLED, cooldown_until=NOW + timedelta(days=1), cancels_since_refill=1)
    slot = full_slot(remaining_quantity=0, order=order)
    assert decide(DeviceStatus.LINKED, slot, NOW).verdict is Verdict.COOLDOWN
    assert decide(DeviceStatus.LINKED, slot, NOW + timedelta(days=1)).reorder


def test_second_cancel_blocks_until_refill():
    order = SlotOrder(OrderState.CANCELLED, cooldown_until=NOW - timedelta(days=30), cancels_since_refill=2)
    slot = full_slot(remaining_quantity=0, order=order)
    assert decide(DeviceStatus.LINKED, slot, NOW).verdict is Verdict.BLOCKED_UNTIL_REFILL


def test_policy_override_turns_auto_reorder_off():
    slot = full_slot(remaining_quantity=0, policy=SlotPolicy(auto_reorder=False))
    assert decide(DeviceStatus.LINKED, slot, NOW).verdict is Verdict.AUTO_REORDER_OFF


def test_reauth_required_device_is_not_reordered():
    verdict = decide(DeviceStatus.REAUTH_REQUIRED, full_slot(remaining_quantity=0), NOW).verdict
    assert verdict is Verdict.DEVICE_NOT_LINKED
