"""DRS is the source of truth for orders (issue 14, defect 1; ``services.order_truth``).

A late parcel: the backend settled the order by assumption (estimated date + grace passed), then DRS
answers the next replenish with ``ORDER_INPROGRESS`` naming that same order. The order must come back
with its state and dates, a refill must clear it, and later notifications about it must still apply.
Real HTTP to the simulator, moto for DynamoDB, the reorder function fed by the state table's stream.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from drs_core import dependencies, schema
from drs_core.adapters.drs_client import OrderInfo, OrderItem
from drs_core.adapters.items import Attr, key_item, slot_from_item
from drs_core.adapters.notification_store import NotificationStore, OrderFacts
from drs_core.domain.models import OrderState, Slot, SlotOrder
from drs_core.errors import DrsNotFound
from drs_core.services.notifications import settle_deliveries
from drs_core.services.order_truth import GIVE_UP_AFTER, RECHECK_MARGIN, check_due, reconcile_orders
from tests.conftest import AwsEnv
from tests.integration.test_reorder_decision import measured, replenish_calls, report, slot_item
from tests.support import ordering as fixtures
from tests.support.api_fixtures import Linked
from tests.support.ordering import Ordering

api = fixtures.api
simulator = fixtures.simulator
ordering = fixtures.ordering

DAY = 86_400.0


def slot_of(aws: AwsEnv, serial: str) -> Slot:
    return slot_from_item(slot_item(aws, serial))


def shipped_then_settled_by_assumption(ordering: Ordering, aws: AwsEnv) -> tuple[Linked, str]:
    """A standard device's Filter ordered, shipped (ItemShipped applied), its parcel 4 days late, and
    the backend's old inference run 2 days after the estimate: the slot is free again (NONE)."""
    device = measured(ordering, test=False)
    report(ordering, device, 5)
    ordering.pump()
    slot = slot_of(aws, device.serial)
    instance_id = slot.order.instance_id
    assert slot.order.state is OrderState.PLACED and instance_id
    sim = ordering.api.sim
    sim.order_action(instance_id, "ship")
    sim.delay_order(instance_id, 4)
    eta = ordering.clock.now() + timedelta(days=3)
    store = NotificationStore(aws.state_table)
    store.record_order(
        OrderFacts(
            device.serial,
            instance_id,
            "Filter",
            OrderState.SHIPPED,
            ordering.clock.now(),
            estimated_delivery_date=eta,
        )
    )
    shipped = SlotOrder(OrderState.SHIPPED, instance_id=instance_id, estimated_delivery_date=eta)
    assert store.set_slot_order(device.serial, "Filter", expected_states={OrderState.PLACED}, new=shipped)
    ordering.clock.advance(5 * DAY)
    moved = settle_deliveries(device.serial, [slot_of(aws, device.serial)], repository=store)
    assert moved and moved[0].order.state is OrderState.NONE
    ordering.tap.read()
    return device, instance_id


def test_order_inprogress_naming_a_settled_order_reopens_it_with_its_state_and_date(
    ordering: Ordering, aws: AwsEnv
) -> None:
    # Given an order settled by assumption while its parcel is still out for delivery
    device, instance_id = shipped_then_settled_by_assumption(ordering, aws)
    serial = device.serial
    # When the slot is due again and the reorder function calls replenish
    report(ordering, device, 4)
    ordering.pump()
    # Then DRS answered ORDER_INPROGRESS with that order, and the slot holds it SHIPPED with its date
    assert replenish_calls(ordering)[-1]["detailCode"] == "ORDER_INPROGRESS"
    slot = slot_of(aws, serial)
    assert (slot.order.state, slot.order.instance_id) == (OrderState.SHIPPED, instance_id)
    assert slot.order.estimated_delivery_date is not None
    # and the order's history is open again: a later notification about it is progress, not stale
    history = aws.dynamodb.get_item(
        TableName=aws.state_table, Key=key_item(schema.order_key(serial, instance_id)), ConsistentRead=True
    )["Item"]
    assert Attr.DELIVERED_AT not in history
    # When the parcel arrives and the customer loads it
    ordering.clock.advance(DAY)
    answer = ordering.post_usage(
        device, [{"slotId": "Filter", "observedAt": ordering.now_iso(), "refilledQuantity": 30}]
    )
    assert answer.status == 202, answer.body
    # Then the refill delivered it: the slot is free for its next order
    assert slot_of(aws, serial).order.state is OrderState.NONE


def ordered(ordering: Ordering, aws: AwsEnv, state: OrderState) -> tuple[Linked, NotificationStore, datetime]:
    """A standard device's Filter ordered by the reorder function, the slot's order set to ``state``
    with an estimated delivery date 3 days ahead (returned)."""
    device = measured(ordering, test=False)
    report(ordering, device, 5)
    ordering.pump()
    store = NotificationStore(aws.state_table)
    slot = slot_of(aws, device.serial)
    eta = ordering.clock.now() + timedelta(days=3)
    dated = SlotOrder(state, instance_id=slot.order.instance_id, estimated_delivery_date=eta)
    assert store.set_slot_order(device.serial, "Filter", expected_states={OrderState.PLACED}, new=dated)
    return device, store, eta


class _Drs:
    """A stand-in for the device's getOrderInfo (the reconciliation's only DRS call)."""

    def __init__(self, status: str | None, asin: str = "B00FILTER1", packs: float = 1) -> None:
        self.status, self.asked = status, 0
        self.asin, self.packs = asin, packs

    def __call__(self, instance_id: str) -> OrderInfo:
        self.asked += 1
        if self.status is None:
            raise DrsNotFound("getOrderInfo: HTTP 404", status=404, operation="getOrderInfo")
        return OrderInfo(instance_id, (OrderItem(self.asin, None, self.packs, "Filter", self.status),))


def test_an_overdue_order_is_checked_with_drs_and_set_from_its_answer(
    ordering: Ordering, aws: AwsEnv
) -> None:
    # Given a placed order whose estimated date is past by more than the margin
    device, store, eta = ordered(ordering, aws, OrderState.SHIPPED)
    instance_id = str(slot_of(aws, device.serial).order.instance_id)
    now = eta + RECHECK_MARGIN
    # When DRS says it is still on its way, then that it was delivered
    still = _Drs("Shipped")
    kept = reconcile_orders(
        device.serial, [slot_of(aws, device.serial)], repository=store, lookup=still, now=now
    )
    delivered = _Drs("Delivered")
    moved = reconcile_orders(
        device.serial, [slot_of(aws, device.serial)], repository=store, lookup=delivered, now=now
    )
    # Then DRS was asked each time, the order stayed open while shipping, and was closed once delivered
    assert (still.asked, delivered.asked) == (1, 1)
    assert kept == []
    assert moved and moved[0].order.state is OrderState.NONE
    assert dependencies.repository().get_order(device.serial, instance_id) is not None


def test_deadlines() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 10, tzinfo=UTC)
    dated = SlotOrder(OrderState.SHIPPED, "o-1", estimated_delivery_date=now - RECHECK_MARGIN)
    not_yet = SlotOrder(OrderState.PLACED, "o-2", estimated_delivery_date=now - RECHECK_MARGIN / 2)
    silent = SlotOrder(OrderState.PLACED, "o-3")
    # An order past its date plus the margin is due; one within it is not; a dateless PLACED order is
    # due a day after placement (or at once if we do not know when it was placed)
    assert check_due(dated, None, now)
    assert not check_due(not_yet, None, now)
    assert not check_due(silent, now - timedelta(hours=12), now)
    assert check_due(silent, now - timedelta(days=1), now)
    assert check_due(silent, None, now)
    assert not check_due(SlotOrder(OrderState.NONE), None, now)


def test_an_order_drs_keeps_calling_processing_is_given_up_two_weeks_past_its_date(
    ordering: Ordering, aws: AwsEnv
) -> None:
    # Given a placed order whose estimated date passed two weeks ago, DRS still saying "Processing"
    device, store, eta = ordered(ordering, aws, OrderState.PLACED)
    drs = _Drs("Processing")
    # When the visit checks it a day before, and on, the bound
    early = reconcile_orders(
        device.serial,
        [slot_of(aws, device.serial)],
        repository=store,
        lookup=drs,
        now=eta + timedelta(days=13),
    )
    late = reconcile_orders(
        device.serial, [slot_of(aws, device.serial)], repository=store, lookup=drs, now=eta + GIVE_UP_AFTER
    )
    # Then it stayed open the first time and is taken as delivered at the bound
    assert early == [] and drs.asked == 2
    assert late and late[0].order.state is OrderState.NONE


def test_a_shipment_the_backend_never_heard_of_counts_as_stock_on_hand(
    ordering: Ordering, aws: AwsEnv
) -> None:
    # Given a placed order past its date whose ItemShipped was lost (the slot still says PLACED)
    device, store, eta = ordered(ordering, aws, OrderState.PLACED)
    before = slot_of(aws, device.serial).on_hand_quantity
    # When the daily visit learns from DRS that it was delivered
    moved = reconcile_orders(
        device.serial,
        [slot_of(aws, device.serial)],
        repository=store,
        lookup=_Drs("Delivered"),
        now=eta + RECHECK_MARGIN,
        model_id="WaterFilterPro",
    )
    # Then the slot is free and the package counts as stock on hand until it is loaded, as if
    # ItemShipped had come: the slot is not ordered again for the same need
    after = slot_of(aws, device.serial)
    assert moved and after.order.state is OrderState.NONE
    assert after.on_hand_quantity == before + 1


@pytest.mark.parametrize(
    ("asin", "packs", "added"),
    [
        ("B00FILTER1", 2, 2.0),  # two packs of one filter each, in the slot's unit (count)
        ("B0UNKNOWN", 2, 0.0),  # an ASIN the model catalog does not know: never guessed
    ],
)
def test_a_shipment_learnt_from_drs_adds_packs_in_the_slots_unit(
    ordering: Ordering, aws: AwsEnv, asin: str, packs: float, added: float
) -> None:
    # Given a placed order past its date whose ItemShipped was lost
    device, store, eta = ordered(ordering, aws, OrderState.PLACED)
    before = slot_of(aws, device.serial).on_hand_quantity
    # When DRS says it shipped that many packs of that ASIN
    reconcile_orders(
        device.serial,
        [slot_of(aws, device.serial)],
        repository=store,
        lookup=_Drs("Shipped", asin=asin, packs=packs),
        now=eta + RECHECK_MARGIN,
        model_id="WaterFilterPro",
    )
    # Then stock on hand grows by the catalog's pack quantity times the packs, in the slot's unit
    after = slot_of(aws, device.serial)
    assert after.order.state is OrderState.SHIPPED
    assert after.on_hand_quantity == before + added


def test_a_test_order_learnt_shipped_from_drs_adds_no_stock(ordering: Ordering, aws: AwsEnv) -> None:
    # Given a placed order past its date, on a test device (test orders do not ship)
    device, store, eta = ordered(ordering, aws, OrderState.PLACED)
    before = slot_of(aws, device.serial).on_hand_quantity
    # When DRS's answer says shipped
    reconcile_orders(
        device.serial,
        [slot_of(aws, device.serial)],
        repository=store,
        lookup=_Drs("Shipped"),
        now=eta + RECHECK_MARGIN,
        is_test_device=True,
        model_id="WaterFilterPro",
    )
    # Then no stock is added
    assert slot_of(aws, device.serial).on_hand_quantity == before


def test_a_refill_delivers_a_placed_order_whose_date_is_near_but_not_an_early_one() -> None:
    from datetime import UTC

    from drs_core.domain.order_lifecycle import EARLY_ARRIVAL, on_refill

    # Given placed orders (their ItemShipped lost) due tomorrow, due in three days, and with no date
    now = datetime(2026, 1, 10, tzinfo=UTC)
    near = SlotOrder(OrderState.PLACED, "o-1", estimated_delivery_date=now + EARLY_ARRIVAL)
    early = SlotOrder(OrderState.PLACED, "o-2", estimated_delivery_date=now + timedelta(days=3))
    undated = SlotOrder(OrderState.PLACED, "o-3")
    # When the device reports a refill now, Then only the one due tomorrow has arrived
    assert on_refill(near, now) == SlotOrder()
    assert on_refill(early, now) == early
    assert on_refill(undated, now) == undated
