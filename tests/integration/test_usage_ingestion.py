"""The usage route end to end: device authorizer → usage function → moto, the simulator for linking.

Replays and out-of-order readings must not double count or regress; bad requests must leave every
table as it was; a steady-state reading must cost exactly one DynamoDB write and no read.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from drs_core import dependencies
from drs_core.clock import to_iso
from tests.conftest import AwsEnv
from tests.support import ordering as fixtures
from tests.support.api_fixtures import DEVICE, concrete
from tests.support.ordering import Ordering

api = fixtures.api
simulator = fixtures.simulator
ordering = fixtures.ordering


def scan(aws: AwsEnv, table: str) -> list[dict[str, Any]]:
    items = aws.dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    return sorted(
        ({k: Decimal(v["N"]) if "N" in v else v for k, v in item.items()} for item in items),
        key=lambda item: (item["pk"]["S"], item.get("sk", {}).get("S", "")) if "pk" in item else str(item),
    )


def tables(aws: AwsEnv) -> tuple[list, list]:
    return scan(aws, aws.state_table), scan(aws, aws.idempotency_table)


def level(slot: str, remaining: float, at: str, **extra: Any) -> dict[str, Any]:
    return {"slotId": slot, "observedAt": at, "remainingQuantity": remaining, **extra}


def used(slot: str, amount: float, at: str) -> dict[str, Any]:
    return {"slotId": slot, "observedAt": at, "consumedQuantity": amount}


def slot_of(answer: Any, slot_id: str) -> dict[str, Any]:
    (slot,) = [s for s in answer.body["slots"] if s["slotId"] == slot_id]
    return slot


class DynamoDBCalls:
    """Counts the DynamoDB operations a client sends (botocore's before-call event)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        client.meta.events.register("before-call.dynamodb.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1


# --- happy paths -------------------------------------------------------------------------------------


def test_the_app_sees_the_device_active_after_a_reading(ordering: Ordering) -> None:
    # Given a linked device that has not reported yet
    device = ordering.api.link()
    path = concrete(DEVICE, device.serial)
    before = ordering.api.request("GET", DEVICE, path, authorization=device.owner.bearer)
    assert before.body["lastActiveAt"] is None
    # When it reports a level
    assert ordering.post_usage(device, [level("Filter", 40, ordering.now_iso())]).status == 202
    # Then the companion app's view shows the reading's time as the last activity (no device write)
    after = ordering.api.request("GET", DEVICE, path, authorization=device.owner.bearer)
    assert after.body["lastActiveAt"] == ordering.now_iso()


def test_readings_are_applied_and_answered_with_the_slots(ordering: Ordering) -> None:
    # Given a linked device (slots Filter and Cleaner)
    device = ordering.api.link()
    now = ordering.now_iso()
    # When it reports a level for each slot, with the Filter's full quantity
    answer = ordering.post_usage(
        device, [level("Filter", 40, now, originalQuantity=50), level("Cleaner", 1.0, now)]
    )
    # Then 202 with both slots as they now stand
    assert answer.status == 202, answer.body
    filter_slot = slot_of(answer, "Filter")
    assert (filter_slot["remainingQuantity"], filter_slot["originalQuantity"]) == (40.0, 50.0)
    assert slot_of(answer, "Cleaner")["remainingQuantity"] == 1.0
    assert filter_slot["order"] == {"state": "NONE"}


def test_a_replayed_request_answers_the_same_and_counts_once(ordering: Ordering) -> None:
    # Given a device whose Filter holds 10
    device = ordering.api.link()
    ordering.post_usage(device, [level("Filter", 10, ordering.now_iso(), originalQuantity=10)])
    ordering.clock.advance(60)
    request = [used("Filter", 2, ordering.now_iso())]
    # When the same consumption is posted three times under one Idempotency-Key
    answers = [ordering.post_usage(device, request, key="reading-0001") for _ in range(3)]
    # Then every answer is the first one, and 2 units were subtracted once
    assert [a.status for a in answers] == [202, 202, 202]
    assert answers[1].body == answers[0].body == answers[2].body
    assert slot_of(answers[0], "Filter")["remainingQuantity"] == 8.0
    # And a new key counts again
    again = ordering.post_usage(device, request, key="reading-0002")
    assert slot_of(again, "Filter")["remainingQuantity"] == 6.0


def test_a_key_reused_for_other_readings_is_refused(ordering: Ordering) -> None:
    # Given a request stored under a key
    device = ordering.api.link()
    ordering.post_usage(device, [level("Filter", 10, ordering.now_iso())], key="k1")
    # When the same key comes with other readings
    answer = ordering.post_usage(device, [level("Filter", 3, ordering.now_iso())], key="k1")
    # Then 422, and the level did not move
    assert (answer.status, answer.error_code) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert ordering.post_usage(device, [level("Filter", 10, ordering.now_iso())], key="k1").status == 202


def test_out_of_order_levels_do_not_move_a_slot_backwards(ordering: Ordering) -> None:
    # Given a device that reported 8 at t+2h
    device = ordering.api.link()
    start = ordering.clock.now()
    ordering.clock.advance(3 * 3600)
    ordering.post_usage(device, [level("Filter", 8, to_iso(start + timedelta(hours=2)))])
    # When a level observed at t+1h and a consumption observed at t+30min arrive late
    late = ordering.post_usage(
        device, [level("Filter", 9, to_iso(start + timedelta(hours=1))), used("Filter", 1, to_iso(start))]
    )
    # Then both are acknowledged but not applied
    assert late.status == 202
    assert slot_of(late, "Filter")["remainingQuantity"] == 8.0
    # And readings within one request apply in observation order, whatever their order in the body
    newer = ordering.post_usage(
        device,
        [
            level("Filter", 5, to_iso(start + timedelta(hours=3))),
            level("Filter", 7, to_iso(start + timedelta(hours=2.5))),
        ],
    )
    assert slot_of(newer, "Filter")["remainingQuantity"] == 5.0


# --- refusals ----------------------------------------------------------------------------------------

BAD_READINGS: list[tuple[str, Any]] = [
    ("negative level", [{"slotId": "Filter", "observedAt": "2026-01-01T00:00:00Z", "remainingQuantity": -1}]),
    ("zero consumption", [{"slotId": "Filter", "observedAt": "2026-01-01T00:00:00Z", "consumedQuantity": 0}]),
    (
        "two quantities",
        [
            {
                "slotId": "Filter",
                "observedAt": "2026-01-01T00:00:00Z",
                "remainingQuantity": 1,
                "consumedQuantity": 1,
            }
        ],
    ),
    ("no quantity", [{"slotId": "Filter", "observedAt": "2026-01-01T00:00:00Z"}]),
    (
        "string quantity",
        [{"slotId": "Filter", "observedAt": "2026-01-01T00:00:00Z", "remainingQuantity": "3"}],
    ),
    (
        "huge quantity",
        [{"slotId": "Filter", "observedAt": "2026-01-01T00:00:00Z", "remainingQuantity": 1e300}],
    ),
    ("epoch timestamp", [{"slotId": "Filter", "observedAt": 1767225600, "remainingQuantity": 1}]),
    ("bad timestamp", [{"slotId": "Filter", "observedAt": "yesterday", "remainingQuantity": 1}]),
    (
        "unknown field",
        [{"slotId": "Filter", "observedAt": "2026-01-01T00:00:00Z", "remainingQuantity": 1, "x": 1}],
    ),
    ("no readings", []),
    (
        "101 readings",
        [{"slotId": "Filter", "observedAt": "2026-01-01T00:00:00Z", "consumedQuantity": 1}] * 101,
    ),
]


def test_bad_readings_are_refused_and_leave_the_tables_untouched(ordering: Ordering, aws: AwsEnv) -> None:
    # Given a linked device with a measured Filter
    device = ordering.api.link()
    ordering.post_usage(device, [level("Filter", 10, ordering.now_iso())], key="first")
    before = tables(aws)
    # When each bad request is posted (keyed, so nothing may be stored for the key either)
    for name, readings in BAD_READINGS:
        answer = ordering.post_usage(device, readings, key=f"bad-{name}")
        # Then 400 INVALID_REQUEST
        assert (answer.status, answer.error_code) == (400, "INVALID_REQUEST"), name
    # And not-a-number and infinity, which Python's JSON accepts, are refused too
    start = '{"readings": [{"slotId": "Filter", "observedAt": "2026-01-01T00:00:00Z", '
    for raw in (start + '"remainingQuantity": NaN}]}', start + '"consumedQuantity": Infinity}]}'):
        answer = ordering.api.request(
            "POST",
            fixtures.USAGE,
            f"/v1/devices/{device.serial}/usage",
            authorization=f"Device {device.device_token}",
            raw_body=raw,
        )
        assert answer.status == 400, raw
    # And a reading observed 6 minutes ahead of the server's clock
    future = ordering.post_usage(
        device, [level("Filter", 1, to_iso(ordering.clock.now() + timedelta(minutes=6)))]
    )
    assert (future.status, future.error_code) == (400, "INVALID_READING")
    # And nothing changed in any table
    assert tables(aws) == before


def test_an_unknown_slot_refuses_the_whole_request_and_keeps_nothing(ordering: Ordering, aws: AwsEnv) -> None:
    # Given a device with two measured slots
    device = ordering.api.link()
    now = ordering.now_iso()
    ordering.post_usage(device, [level("Filter", 10, now), level("Cleaner", 1.5, now)])
    before = tables(aws)
    ordering.clock.advance(60)
    now = ordering.now_iso()
    # When one request reports both known slots and one the device does not have
    answer = ordering.post_usage(
        device, [used("Filter", 1, now), used("Cleaner", 0.5, now), used("Ghost", 1, now)], key="with-ghost"
    )
    # Then 400 UNKNOWN_SLOT, and the two known slots are as they were
    assert (answer.status, answer.error_code) == (400, "UNKNOWN_SLOT")
    assert tables(aws) == before
    # And the same key with the unknown slot removed is a new request that applies
    fixed = ordering.post_usage(device, [used("Filter", 1, now)], key="without-ghost")
    assert slot_of(fixed, "Filter")["remainingQuantity"] == 9.0


def test_another_devices_token_cannot_report_for_a_serial(ordering: Ordering) -> None:
    # Given two linked devices
    first, second = ordering.api.link(), ordering.api.link()
    # When the second device's token reports for the first serial
    answer = ordering.api.request(
        "POST",
        fixtures.USAGE,
        f"/v1/devices/{first.serial}/usage",
        authorization=f"Device {second.device_token}",
        body={"readings": [level("Filter", 1, ordering.now_iso())]},
    )
    # Then the authorizer refuses it before the function runs
    assert answer.status == 403 and not answer.reached_function


# --- cost --------------------------------------------------------------------------------------------


def test_a_steady_state_reading_is_one_write_and_no_read(ordering: Ordering) -> None:
    # Given a measured device whose slots are well above their reorder points
    device = ordering.api.link()
    now = ordering.now_iso()
    ordering.post_usage(
        device,
        [level("Filter", 100, now, originalQuantity=100), level("Cleaner", 50, now, originalQuantity=50)],
    )
    counter = DynamoDBCalls(dependencies.usage_store().client)
    cleaner = iter(range(49, 0, -1))

    def hourly(hours: int, *, keyed: bool) -> dict[str, int]:
        counter.calls.clear()
        for _ in range(hours):
            ordering.clock.advance(3600)
            now = ordering.now_iso()
            key = f"{ordering.clock.now().timestamp()}" if keyed else None
            readings = [used("Filter", 1, now), level("Cleaner", next(cleaner), now)]
            assert ordering.post_usage(device, readings, key=key).status == 202
        return dict(counter.calls)

    # When it reports hourly readings for both slots through the first day, without an Idempotency-Key
    # Then each slot reading costs one UpdateItem on the state table, and nothing is read
    assert hourly(11, keyed=False) == {"UpdateItem": 22}
    # And with an Idempotency-Key, the idempotency record adds one PutItem and one UpdateItem a request
    assert hourly(11, keyed=True) == {"UpdateItem": 22 + 11, "PutItem": 11}
    # And the reading that closes the slot's day costs one more (refused) write: the daily rate update
    assert hourly(2, keyed=False) == {"UpdateItem": 4 + 2}


@pytest.mark.parametrize("readings", [1, 100])
def test_request_size_limits_are_accepted(ordering: Ordering, readings: int) -> None:
    # Given a linked device
    device = ordering.api.link()
    start = ordering.clock.now() - timedelta(hours=2)
    # When it posts 1 or 100 readings (the bounds)
    body = [used("Filter", 0.01, to_iso(start + timedelta(seconds=n))) for n in range(readings)]
    body[0] = level("Filter", 10, to_iso(start))
    answer = ordering.post_usage(device, body)
    # Then all of them apply, in observation order
    assert answer.status == 202
    assert slot_of(answer, "Filter")["remainingQuantity"] == pytest.approx(10 - 0.01 * (readings - 1))
