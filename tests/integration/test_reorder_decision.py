"""Reorder decisions end to end: readings → state-table stream (filtered as deployed) → reorder function
→ the DRS simulator, on the shared simulated clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from drs_core import dependencies, schema
from drs_core.adapters.items import key_item, slot_from_item
from drs_core.adapters.report_store import ReportStore
from drs_core.adapters.usage_store import state_from_item
from drs_core.clock import to_iso
from drs_core.domain.models import DeviceStatus, OrderState, SlotOrder, SlotPolicy
from drs_core.domain.usage import REORDER_HOLD, STALE_CLAIM_AFTER
from tests.conftest import AwsEnv
from tests.support import ordering as fixtures
from tests.support.api_fixtures import Linked
from tests.support.ordering import REORDER_FILTER, Ordering

api = fixtures.api
simulator = fixtures.simulator
ordering = fixtures.ordering

DAY = 86_400.0


def slot_item(aws: AwsEnv, serial: str, slot_id: str = "Filter") -> dict[str, Any]:
    key = key_item(schema.slot_key(serial, slot_id))
    return aws.dynamodb.get_item(TableName=aws.state_table, Key=key, ConsistentRead=True)["Item"]


def report(ordering: Ordering, device: Linked, remaining: float, **extra: Any) -> None:
    reading = {"slotId": "Filter", "observedAt": ordering.now_iso(), "remainingQuantity": remaining, **extra}
    answer = ordering.post_usage(device, [reading])
    assert answer.status == 202, answer.body


def measured(ordering: Ordering, *, remaining: float = 30, original: float = 30, test: bool = True) -> Linked:
    """A linked device whose Filter was measured at ``remaining`` of ``original``; stream consumed."""
    device = ordering.api.link(is_test_device=test)
    report(ordering, device, remaining, originalQuantity=original)
    ordering.tap.read()
    return device


def replenish_calls(ordering: Ordering) -> list[dict[str, Any]]:
    return [
        c for c in ordering.api.sim.request("GET", "/__sim/calls")["calls"] if c["operation"] == "replenish"
    ]


# --- the policy point --------------------------------------------------------------------------------


def test_a_slot_draining_over_days_is_ordered_once_at_the_policy_point(
    ordering: Ordering, aws: AwsEnv
) -> None:
    # Given a standard device whose 30-unit Filter drains 2 units a day, reported every 4 hours
    device = measured(ordering, test=False)
    level, invocations, crossed_at = 30.0, 0, None
    # When 12 simulated days pass, the stream being delivered to the reorder function after each reading
    for _ in range(12 * 6):
        ordering.clock.advance(DAY / 6)
        level = max(level - 2 / 6, 0.0)
        report(ordering, device, round(level, 6))
        stored = state_from_item(slot_item(aws, device.serial))
        if crossed_at is None and stored.reorder_point is not None and level <= stored.reorder_point:
            crossed_at = ordering.clock.now()
        invocations += ordering.pump()
    # Then the rate was learned (2 a day), so the point is 2 x (7 lead + 2 safety) days = 18 units
    stored = state_from_item(slot_item(aws, device.serial))
    assert stored.daily_consumption is not None and abs(stored.daily_consumption - 2.0) < 0.01
    assert abs(float(stored.reorder_point or 0) - 18.0) < 0.1
    # And exactly one order was placed, at the first reading at or below that point (day 6)
    placed = ordering.placed()
    assert len(placed) == 1 and len(replenish_calls(ordering)) == 1
    assert crossed_at is not None and placed[0]["at"] == to_iso(crossed_at)
    assert crossed_at - ordering.clock.now() + timedelta(days=12) == timedelta(days=6)
    # And the reorder function was invoked once: the stream filter let only the due record through
    assert invocations == 1
    slot = slot_from_item(slot_item(aws, device.serial))
    assert slot.order.state is OrderState.PLACED and slot.order.instance_id
    history = dependencies.repository().get_order(device.serial, slot.order.instance_id)
    assert history is not None and history.state is OrderState.PLACED and not history.is_test


def test_only_records_of_due_slots_pass_the_filter(ordering: Ordering) -> None:
    # Given a measured device (threshold 20 % of 30 = 6)
    device = measured(ordering)
    # When a reading above the point, then one below it, are written
    report(ordering, device, 20)
    above = ordering.tap.read()
    ordering.clock.advance(60)
    report(ordering, device, 5)
    below = ordering.tap.read()
    # Then the first one's record does not match the filter and the second one's does
    assert len(above) == 1 and not REORDER_FILTER.matches_event(above[0])
    assert len(below) == 1 and REORDER_FILTER.matches_event(below[0])
    # And the claim's own write does not invoke the function again
    ordering.invoke_reorder(below)
    assert [r for r in ordering.tap.read() if REORDER_FILTER.matches_event(r)] == []
    assert len(ordering.placed()) == 1


def test_device_and_order_items_never_pass_the_filter(ordering: Ordering) -> None:
    # Given records of a device item and an order item that carry reorderDue (they never should)
    records = [
        {
            "eventName": "MODIFY",
            "dynamodb": {
                "Keys": {"pk": {"S": "DEVICE#A"}, "sk": {"S": sk}},
                "NewImage": {"reorderDue": {"BOOL": True}},
            },
        }
        for sk in ("DEVICE", "ORDER#amzn1.dash.v2.o.1")
    ]
    removed = {"eventName": "REMOVE", "dynamodb": {"Keys": {"pk": {"S": "DEVICE#A"}, "sk": {"S": "SLOT#F"}}}}
    # When the filter is applied, Then none passes
    assert not any(REORDER_FILTER.matches_event(record) for record in [*records, removed])


# --- DRS answers ---------------------------------------------------------------------------------------


def test_an_order_already_open_at_drs_is_adopted_not_doubled(ordering: Ordering, aws: AwsEnv) -> None:
    # Given DRS already has an open order for the slot (placed outside this backend)
    device = measured(ordering)
    token = dependencies.token_vault().access_token(device.serial)
    existing = dependencies.drs_client().replenish(token, "Filter")
    assert existing.order_placed
    # When the slot crosses its point and the reorder function runs
    report(ordering, device, 5)
    ordering.pump()
    # Then DRS answered ORDER_INPROGRESS, nothing more was placed, and the open order was adopted
    assert [c["detailCode"] for c in replenish_calls(ordering)] == ["TEST_ORDER_PLACED", "ORDER_INPROGRESS"]
    slot = slot_from_item(slot_item(aws, device.serial))
    assert (slot.order.state, slot.order.instance_id) == (OrderState.PLACED, existing.event_instance_id)


def test_a_retryable_failure_releases_the_claim_and_the_retry_orders(ordering: Ordering, aws: AwsEnv) -> None:
    # Given DRS failing every replenish with 500
    device = measured(ordering)
    ordering.api.sim.set_fault("replenish", 1.0, status=500)
    report(ordering, device, 5)
    records = ordering.tap.due()
    # When the reorder function handles the due record
    answer = ordering.invoke_reorder(records)
    # Then the record is reported failed (the mapping retries it) and the claim was given back
    assert answer["batchItemFailures"] == [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]
    assert slot_from_item(slot_item(aws, device.serial)).order.state is OrderState.NONE
    # And once DRS recovers, the mapping's retry of the same record orders, once
    ordering.api.sim.set_fault("replenish", 0)
    assert ordering.invoke_reorder(records) == {"batchItemFailures": []}
    assert len(ordering.placed()) == 1
    assert slot_from_item(slot_item(aws, device.serial)).order.state is OrderState.PLACED


def test_a_revoked_token_marks_reauth_and_holds_the_slot_without_retry(
    ordering: Ordering, aws: AwsEnv
) -> None:
    # Given the customer removed the maker on Amazon (every token revoked), unknown to the backend yet
    device = measured(ordering)
    ordering.api.sim.remove_maker(device.owner.customer_id)
    report(ordering, device, 5)
    # When the reorder function handles the due record
    answer = ordering.invoke_reorder(ordering.tap.due())
    # Then no retry is asked for; the device needs re-authorisation; the slot is free but held
    assert answer == {"batchItemFailures": []}
    assert dependencies.repository().get_device(device.serial).status is DeviceStatus.REAUTH_REQUIRED
    state = state_from_item(slot_item(aws, device.serial))
    assert state.order.state is OrderState.NONE and not state.reorder_due
    assert state.reorder_held_until == ordering.clock.now() + REORDER_HOLD
    # And further readings below the point invoke nothing while the hold lasts
    ordering.clock.advance(3600)
    report(ordering, device, 4)
    assert ordering.tap.due() == []


def test_a_device_that_is_not_linked_is_held_without_calling_drs(ordering: Ordering, aws: AwsEnv) -> None:
    # Given a device waiting for its customer to link it again
    device = measured(ordering)
    dependencies.repository().set_device_status(device.serial, DeviceStatus.REAUTH_REQUIRED)
    report(ordering, device, 5)
    # When its due record is handled
    ordering.pump()
    # Then DRS was not called and the slot is held
    assert replenish_calls(ordering) == []
    assert state_from_item(slot_item(aws, device.serial)).reorder_held_until is not None


def test_duplicate_and_late_records_place_nothing_more(ordering: Ordering, aws: AwsEnv) -> None:
    # Given a due record that was handled (order placed)
    device = measured(ordering)
    report(ordering, device, 5)
    records = ordering.tap.due()
    ordering.invoke_reorder(records)
    # When the same record is delivered again, twice in one batch and once a day later
    ordering.invoke_reorder(records + records)
    ordering.clock.advance(DAY)
    ordering.invoke_reorder(records)
    # Then DRS saw one replenish only
    assert len(replenish_calls(ordering)) == 1


# --- claims and cooldowns ----------------------------------------------------------------------------


def test_a_stale_claim_is_taken_over_by_the_next_due_reading(ordering: Ordering, aws: AwsEnv) -> None:
    # Given a slot claimed by an invocation that died before calling DRS
    device = measured(ordering)
    repository = dependencies.repository()
    assert repository.claim_for_order(device.serial, "Filter", ordering.clock.now()) is not None
    ordering.tap.read()
    # When a reading below the point arrives while the claim is fresh, and another once it is stale
    report(ordering, device, 5)
    assert ordering.pump() == 0
    ordering.clock.advance(STALE_CLAIM_AFTER.total_seconds() + 1)
    report(ordering, device, 4.5)
    ordering.pump()
    # Then the stale claim was taken over and the order placed, once
    assert len(ordering.placed()) == 1
    assert slot_from_item(slot_item(aws, device.serial)).order.state is OrderState.PLACED


def test_cooldown_after_a_cancel_and_no_reorder_after_a_second_until_refill(
    ordering: Ordering, aws: AwsEnv
) -> None:
    # Given a slot whose order the customer cancelled (5-day cooldown)
    device = measured(ordering)
    repository = dependencies.repository()
    now = ordering.clock.now()
    cancelled = SlotOrder(
        OrderState.CANCELLED,
        "amzn1.dash.v2.o.x",
        cooldown_until=now + timedelta(days=5),
        cancels_since_refill=1,
    )
    repository.set_slot_order(device.serial, "Filter", expected_states={OrderState.NONE}, new=cancelled)
    # When the slot runs low during the cooldown
    report(ordering, device, 5)
    # Then nothing is proposed
    assert ordering.pump() == 0
    # And after the cooldown the next low reading orders
    ordering.clock.advance(5 * DAY + 1)
    report(ordering, device, 4)
    ordering.pump()
    assert len(ordering.placed()) == 1
    # Given a second cancel of that order (no cooldown left, but two cancels since the last refill)
    instance = slot_from_item(slot_item(aws, device.serial)).order.instance_id
    second = SlotOrder(OrderState.CANCELLED, instance, cancels_since_refill=2)
    repository.set_slot_order(device.serial, "Filter", expected_states={OrderState.PLACED}, new=second)
    ordering.api.sim.order_action(instance, "cancel")
    # When the slot stays low
    ordering.clock.advance(6 * DAY)
    report(ordering, device, 3)
    # Then nothing is proposed until the customer refills
    assert ordering.pump() == 0
    answer = ordering.post_usage(
        device, [{"slotId": "Filter", "observedAt": ordering.now_iso(), "refilledQuantity": 1}]
    )
    assert answer.status == 202
    ordering.pump()
    assert len(ordering.placed()) == 2
    assert state_from_item(slot_item(aws, device.serial)).order.cancels_since_refill == 0


def test_stock_on_hand_counts_as_remaining(ordering: Ordering, aws: AwsEnv) -> None:
    # Given 20 units shipped but not loaded yet
    device = measured(ordering)
    dependencies.repository().add_on_hand(device.serial, "Filter", 20)
    # When the slot itself runs down to 5 (25 in stock with what is on hand)
    report(ordering, device, 5)
    # Then no order is proposed
    assert ordering.pump() == 0
    assert not state_from_item(slot_item(aws, device.serial)).reorder_due


def test_a_per_slot_policy_override_is_honoured(ordering: Ordering, aws: AwsEnv) -> None:
    # Given a slot whose threshold was raised to 50 % (the companion app's policy update)
    device = measured(ordering)
    dependencies.repository().update_policy(device.serial, "Filter", SlotPolicy(threshold_fraction=0.5))
    # When the slot reports 14 of 30
    report(ordering, device, 14)
    # Then it is due (it would not be at the default 20 %)
    ordering.pump()
    assert len(ordering.placed()) == 1
    # Given another slot with automatic reordering turned off
    other = measured(ordering)
    dependencies.repository().update_policy(other.serial, "Filter", SlotPolicy(auto_reorder=False))
    report(ordering, other, 1)
    assert ordering.pump() == 0
    assert state_from_item(slot_item(aws, other.serial)).reorder_due is False


# --- a refill: the used-up package is reported to DRS at once (slotStatus), not a day later ----------


def slot_reports(ordering: Ordering, serial: str) -> list[dict[str, Any]]:
    calls = ordering.api.sim.request("GET", "/__sim/calls")["calls"]
    return [c for c in calls if c["operation"] == "slotStatus" and c.get("serial") == serial]


def test_a_refill_sends_slot_status_at_once_and_only_once(ordering: Ordering, aws: AwsEnv) -> None:
    # Given a measured standard device whose Filter has been drawn down to 1 of 30 over a day
    device = measured(ordering, test=False)
    ordering.clock.advance(DAY)
    report(ordering, device, 1)
    ordering.pump()
    before = len(slot_reports(ordering, device.serial))
    # When the customer loads a new package (a refill reading) and the stream is delivered
    ordering.clock.advance(600)
    refill = {"slotId": "Filter", "observedAt": ordering.now_iso(), "refilledQuantity": 29}
    assert ordering.post_usage(device, [refill]).status == 202
    records = ordering.tap.read()
    passed = [r for r in records if fixtures.passes_filters(r)]
    if passed:
        ordering.invoke_reorder(passed)
    # Then DRS got one slotStatus for Filter right away, with the slot's new contents
    sent = slot_reports(ordering, device.serial)[before:]
    assert [(c["slotId"], c["status"]) for c in sent] == [("Filter", 200)]
    body = ordering.api.sim.request("GET", f"/__sim/devices/{device.serial}")["slotReports"]["Filter"]
    assert body["remainingQuantityInUnit"] == 30 and body["totalQuantityOnHand"] == 0
    # And the report is marked, so the refill's flag is gone and the daily visit finds the day done
    item = slot_item(aws, device.serial)
    assert schema.SLOT_REPORT_DUE_ATTR not in item
    marks = ReportStore(aws.state_table).snapshot(device.serial).marks
    assert marks.slot("Filter").day == ordering.clock.now().date().isoformat()
    # When the same record is delivered again (at-least-once) and the next ordinary reading follows
    ordering.invoke_reorder(passed)
    ordering.clock.advance(600)
    report(ordering, device, 29.5)
    later = [r for r in ordering.tap.read() if fixtures.passes_filters(r)]
    # Then nothing more is reported: the refill was reported once, and an ordinary reading invokes nothing
    assert later == []
    assert len(slot_reports(ordering, device.serial)) == before + 1


def test_a_refill_report_drs_refuses_is_left_to_the_daily_visit(ordering: Ordering, aws: AwsEnv) -> None:
    # Given a measured device, and DRS failing every slotStatus (500, after the client's retries)
    device = measured(ordering, test=False)
    ordering.clock.advance(DAY)
    ordering.api.sim.set_fault("slotStatus", 1.0, status=500)
    # When a refill's record reaches the reorder function
    refill = {"slotId": "Filter", "observedAt": ordering.now_iso(), "refilledQuantity": 10}
    assert ordering.post_usage(device, [refill]).status == 202
    answer = ordering.invoke_reorder([r for r in ordering.tap.read() if fixtures.passes_filters(r)])
    # Then the record is done (no stream retry holds the slot's later records up), the flag is gone,
    # and the day is not marked: the daily visit reports the slot, consumed since its last report
    assert answer == {"batchItemFailures": []}
    assert schema.SLOT_REPORT_DUE_ATTR not in slot_item(aws, device.serial)
    marks = ReportStore(aws.state_table).snapshot(device.serial).marks
    assert marks.slot("Filter").day is None
    assert [c["status"] for c in slot_reports(ordering, device.serial)][-1] == 500
