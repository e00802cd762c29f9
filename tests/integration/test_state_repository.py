"""StateRepository against moto DynamoDB: every method's happy path and the failure its condition guards."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drs_core import schema
from drs_core.adapters.items import device_from_image, slot_from_image
from drs_core.adapters.state_repository import StateRepository
from drs_core.domain.models import (
    Device,
    DeviceStatus,
    Order,
    OrderState,
    SlotOrder,
    SlotPolicy,
)
from drs_core.errors import DeviceAlreadyLinked, SlotNotFound
from tests.conftest import STATE_TABLE

TABLE = STATE_TABLE
SERIAL = "SN-0001"
NOW = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
_serials = itertools.count(1)


class PagingClient:
    """Passes calls through, but asks for one item per Query page, so pagination is exercised."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.query_calls = 0

    def query(self, **kwargs: Any) -> dict[str, Any]:
        self.query_calls += 1
        return self._client.query(Limit=1, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def repo(dynamodb: Any) -> StateRepository:
    return StateRepository(TABLE, dynamodb=dynamodb)


@pytest.fixture
def serial() -> str:
    return f"SN-{next(_serials):06d}"


def raw_item(dynamodb: Any, key: dict[str, str]) -> dict[str, Any] | None:
    answer = dynamodb.get_item(
        TableName=TABLE, Key={k: {"S": v} for k, v in key.items()}, ConsistentRead=True
    )
    return answer.get("Item")


def subscribed_slot(repo: StateRepository, serial: str, slot_id: str = "Filter") -> None:
    repo.upsert_subscription(serial, slot_id, subscribed=True, asin="B00FILTER1", quantity=2, unit="count")


def device(serial: str, **changes: Any) -> Device:
    values: dict[str, Any] = {
        "serial": serial,
        "model_id": "WaterFilterPro",
        "owner_id": "amzn1.account.OWNER_A",
        "status": DeviceStatus.LINKED,
        "is_test_device": True,
        "last_active_at": NOW,
        "credential_hash": "sha256$abc",
        "linked_at": NOW - timedelta(days=3),
        "version": 4,
    }
    values.update(changes)
    return Device(**values)


# --- schema -------------------------------------------------------------------------------------


def test_schema_key_builders_and_table_definition(dynamodb: Any) -> None:
    # Given the shared schema
    # When keys are built and the state table described
    description = dynamodb.describe_table(TableName=TABLE)["Table"]
    # Then keys follow the documented layout, and the table has the sparse owner GSI and the stream
    assert schema.device_key("X1") == {"pk": "DEVICE#X1", "sk": "DEVICE"}
    assert schema.slot_key("X1", "Filter") == {"pk": "DEVICE#X1", "sk": "SLOT#Filter"}
    assert schema.order_key("X1", "amzn1.order.1") == {"pk": "DEVICE#X1", "sk": "ORDER#amzn1.order.1"}
    assert schema.serial_from_pk("DEVICE#X1") == "X1"
    indexes = {index["IndexName"]: index for index in description["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"owner", "report"}
    index = indexes["owner"]
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["ownerId", "pk"]
    assert index["Projection"]["ProjectionType"] == "ALL"
    assert description["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


# --- devices ------------------------------------------------------------------------------------


def test_put_and_get_device_round_trip(repo: StateRepository, serial: str, dynamodb: Any) -> None:
    # Given a device with every field set
    stored = device(serial)
    # When it is put and read back
    repo.put_device(stored)
    # Then it comes back equal, times stored as ISO strings
    assert repo.get_device(serial) == stored
    item = raw_item(dynamodb, schema.device_key(serial))
    assert item["lastActiveAt"] == {"S": "2026-03-01T12:00:00.123Z"}
    assert device_from_image(item) == stored


def test_get_device_missing_is_none(repo: StateRepository) -> None:
    # Given no device item
    # When read
    # Then None
    assert repo.get_device("SN-NOPE") is None
    assert repo.get_device_with_slots("SN-NOPE") is None


def test_device_without_owner_has_no_owner_attribute(
    repo: StateRepository, serial: str, dynamodb: Any
) -> None:
    # Given a device with no owner
    repo.put_device(device(serial, owner_id=None, credential_hash=None, last_active_at=None))
    # When the raw item is read
    item = raw_item(dynamodb, schema.device_key(serial))
    # Then the optional attributes are absent (not NULL), keeping the owner index sparse
    assert "ownerId" not in item and "credentialHash" not in item and "lastActiveAt" not in item
    assert repo.get_device(serial) == device(serial, owner_id=None, credential_hash=None, last_active_at=None)


def test_get_device_with_slots_pages_and_leaves_orders_out(dynamodb: Any, serial: str) -> None:
    # Given a device with two slots and an order, read through one-item pages
    paging = PagingClient(dynamodb)
    repo = StateRepository(TABLE, dynamodb=paging)
    repo.put_device(device(serial))
    subscribed_slot(repo, serial, "Filter")
    subscribed_slot(repo, serial, "Cleaner")
    repo.put_order(Order(serial=serial, instance_id="o-1", slot_id="Filter", state=OrderState.PLACED))
    # When device and slots are read
    found = repo.get_device_with_slots(serial)
    # Then the device and both slots (sorted by id) come back, without the order, over several pages
    assert found is not None
    got_device, slots = found
    assert got_device == device(serial)
    assert [slot.slot_id for slot in slots] == ["Cleaner", "Filter"]
    assert paging.query_calls >= 4


def test_list_devices_by_owner_returns_only_that_owners_devices(dynamodb: Any) -> None:
    # Given devices of two owners and one without owner, read through one-item pages
    paging = PagingClient(dynamodb)
    repo = StateRepository(TABLE, dynamodb=paging)
    mine = [f"SN-OWN-{n}" for n in range(3)]
    for s in mine:
        repo.put_device(device(s, owner_id="amzn1.account.LISTER"))
        subscribed_slot(repo, s)
    repo.put_device(device("SN-OTHER-1", owner_id="amzn1.account.SOMEONE_ELSE"))
    repo.put_device(device("SN-ORPHAN-1", owner_id=None))
    # When the owner's devices are listed
    listed = repo.list_devices_by_owner("amzn1.account.LISTER")
    # Then exactly that owner's devices (no slot items) come back, across pages
    assert sorted(d.serial for d in listed) == mine
    assert all(d.owner_id == "amzn1.account.LISTER" for d in listed)
    assert paging.query_calls >= 3
    assert repo.list_devices_by_owner("amzn1.account.NOBODY") == []


def test_set_device_status_happy_and_guarded(repo: StateRepository, serial: str) -> None:
    # Given a linked device at version 4
    repo.put_device(device(serial))
    # When its status is set with a matching expectation
    changed = repo.set_device_status(
        serial, DeviceStatus.REAUTH_REQUIRED, expected={DeviceStatus.LINKED, DeviceStatus.REAUTH_REQUIRED}
    )
    # Then the new state is returned with the version bumped
    assert changed is not None
    assert changed.status is DeviceStatus.REAUTH_REQUIRED and changed.version == 5
    # When the expectation does not hold, or the device is missing
    refused = repo.set_device_status(serial, DeviceStatus.LINKED, expected={DeviceStatus.DEREGISTERED})
    missing = repo.set_device_status("SN-NOPE", DeviceStatus.LINKED)
    # Then None, and nothing changed or was created
    assert refused is None and missing is None
    assert repo.get_device(serial) == changed
    assert repo.get_device("SN-NOPE") is None
    # When no expectation is given
    # Then any existing device's status can be set
    assert repo.set_device_status(serial, DeviceStatus.DEREGISTERED).status is DeviceStatus.DEREGISTERED


def test_link_device_creates_and_relinks_for_the_same_owner(repo: StateRepository, serial: str) -> None:
    # Given no device item
    # When the device is linked
    linked = repo.link_device(device(serial, owner_id=None, version=0), owner_id="amzn1.account.A")
    # Then it exists with the owner and version 1
    assert linked.owner_id == "amzn1.account.A" and linked.version == 1
    assert repo.get_device(serial) == linked
    # When the same owner links it again (e.g. after REAUTH_REQUIRED) with a new credential
    repo.set_device_status(serial, DeviceStatus.REAUTH_REQUIRED)
    relinked = repo.link_device(device(serial, credential_hash="sha256$new"), owner_id="amzn1.account.A")
    # Then it is linked again with the new credential
    assert relinked.status is DeviceStatus.LINKED
    assert relinked.credential_hash == "sha256$new"
    assert relinked.version == 3


def test_link_device_by_another_owner_is_refused(repo: StateRepository, serial: str) -> None:
    # Given a device linked by owner A
    original = repo.link_device(device(serial), owner_id="amzn1.account.A")
    # When owner B tries to link it
    # Then DeviceAlreadyLinked, and the item is untouched
    with pytest.raises(DeviceAlreadyLinked):
        repo.link_device(device(serial, credential_hash="sha256$b"), owner_id="amzn1.account.B")
    assert repo.get_device(serial) == original


def test_relink_by_another_owner_after_deregistration_is_allowed(repo: StateRepository, serial: str) -> None:
    # Given a device of owner A, then deregistered
    repo.link_device(device(serial), owner_id="amzn1.account.A")
    repo.set_device_status(serial, DeviceStatus.DEREGISTERED)
    # When owner B links it
    linked = repo.link_device(device(serial), owner_id="amzn1.account.B")
    # Then B owns it and it is linked; the owner index follows
    assert linked.owner_id == "amzn1.account.B" and linked.status is DeviceStatus.LINKED
    assert serial in [d.serial for d in repo.list_devices_by_owner("amzn1.account.B")]
    assert serial not in [d.serial for d in repo.list_devices_by_owner("amzn1.account.A")]


# --- slots --------------------------------------------------------------------------------------


def test_upsert_subscription_creates_zeroed_slot_then_keeps_counters(
    repo: StateRepository, serial: str, dynamodb: Any
) -> None:
    # Given no slot item
    # When the subscription is recorded with a model policy
    model_policy = SlotPolicy(threshold_fraction=0.3, lead_time_days=5, safety_days=1, auto_reorder=True)
    created = repo.upsert_subscription(
        serial,
        "Filter",
        subscribed=True,
        asin="B00FILTER1",
        quantity=2,
        unit="count",
        default_policy=model_policy,
    )
    # Then the slot starts zeroed with no order and that policy
    assert created.subscribed and created.asin == "B00FILTER1" and created.unit == "count"
    assert created.original_quantity == 2
    assert (created.remaining_quantity, created.on_hand_quantity) == (0, 0)
    assert created.order == SlotOrder()
    assert created.policy == model_policy
    assert created.version == 1
    # Given counters, an order and a policy change
    repo.add_on_hand(serial, "Filter", 2)
    repo.claim_for_order(serial, "Filter", NOW)
    repo.update_policy(serial, "Filter", SlotPolicy(threshold_fraction=0.5))
    # When the customer picks another product, then clears it
    changed = repo.upsert_subscription(
        serial, "Filter", subscribed=True, asin="B00FILTER2", quantity=3, unit="count"
    )
    cleared = repo.upsert_subscription(
        serial, "Filter", subscribed=False, asin=None, quantity=None, unit=None
    )
    # Then the product changes, counters, order state and policy are kept
    assert changed.asin == "B00FILTER2" and changed.original_quantity == 3
    assert changed.on_hand_quantity == 2
    assert changed.order.state is OrderState.REQUESTED
    assert changed.policy == SlotPolicy(threshold_fraction=0.5)
    assert not cleared.subscribed and cleared.asin is None
    assert cleared.original_quantity == 3 and cleared.unit == "count"
    assert "asin" not in raw_item(dynamodb, schema.slot_key(serial, "Filter"))


def test_add_on_hand_accumulates_exactly(repo: StateRepository, serial: str, dynamodb: Any) -> None:
    # Given a slot
    subscribed_slot(repo, serial)
    # When quantities with no exact binary form are added
    repo.add_on_hand(serial, "Filter", 0.1)
    result = repo.add_on_hand(serial, "Filter", 0.2)
    # Then the stored sum is exact (decimal arithmetic, no float noise) and the version moved twice
    assert raw_item(dynamodb, schema.slot_key(serial, "Filter"))["onHandQuantity"] == {"N": "0.3"}
    assert result.on_hand_quantity == 0.3
    assert result.version == 3
    # When stock is taken away again
    # Then ADD subtracts
    assert repo.add_on_hand(serial, "Filter", -0.3).on_hand_quantity == 0


def test_add_on_hand_and_update_policy_need_the_slot(
    repo: StateRepository, serial: str, dynamodb: Any
) -> None:
    # Given no slot item
    # When stock or a policy is written to it
    # Then SlotNotFound, and no half item is created
    with pytest.raises(SlotNotFound):
        repo.add_on_hand(serial, "Ghost", 1)
    with pytest.raises(SlotNotFound):
        repo.update_policy(serial, "Ghost", SlotPolicy())
    assert raw_item(dynamodb, schema.slot_key(serial, "Ghost")) is None


def test_update_policy_replaces_the_policy(repo: StateRepository, serial: str) -> None:
    # Given a slot with the default policy
    subscribed_slot(repo, serial)
    # When the app changes it
    policy = SlotPolicy(threshold_fraction=0.25, lead_time_days=10, safety_days=3, auto_reorder=False)
    updated = repo.update_policy(serial, "Filter", policy)
    # Then it is stored and returned
    assert updated.policy == policy
    assert repo.get_slot(serial, "Filter").policy == policy


def test_claim_succeeds_once_and_clears_reorder_due(
    repo: StateRepository, serial: str, dynamodb: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a subscribed slot marked reorder-due
    subscribed_slot(repo, serial)
    dynamodb.update_item(
        TableName=TABLE,
        Key={k: {"S": v} for k, v in schema.slot_key(serial, "Filter").items()},
        UpdateExpression="SET reorderDue = :t",
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    # When it is claimed twice
    first = repo.claim_for_order(serial, "Filter", NOW)
    with caplog.at_level(logging.INFO):
        second = repo.claim_for_order(serial, "Filter", NOW)
    # Then only the first succeeds, the slot is REQUESTED and no longer reorder-due
    assert first is not None and first.order.state is OrderState.REQUESTED
    assert second is None
    item = raw_item(dynamodb, schema.slot_key(serial, "Filter"))
    assert item["reorderDue"] == {"BOOL": False}
    assert item["orderRequestedAt"] == {"S": "2026-03-01T12:00:00.123Z"}
    assert slot_from_image(item) == first
    # And the refusal was logged with the state returned by the failed write itself (ALL_OLD)
    (refusal,) = [r for r in caplog.records if r.getMessage() == "order claim refused"]
    assert refusal.orderState == "REQUESTED"


def test_claim_refused_in_cooldown_until_it_ends(repo: StateRepository, serial: str) -> None:
    # Given a slot whose customer cancelled: cooldown until NOW + 5 days
    subscribed_slot(repo, serial)
    until = NOW + timedelta(days=5)
    repo.set_slot_order(
        serial,
        "Filter",
        expected_states={OrderState.NONE},
        new=SlotOrder(
            state=OrderState.CANCELLED,
            instance_id="amzn1.dash.v2.o.OLD",
            cooldown_until=until,
            cancels_since_refill=1,
        ),
    )
    # When claimed during the cooldown
    # Then refused
    assert repo.claim_for_order(serial, "Filter", NOW) is None
    assert repo.claim_for_order(serial, "Filter", until - timedelta(milliseconds=1)) is None
    # When claimed the moment it ends
    # Then allowed: a cancelled order is closed, and the claim forgets it
    claimed = repo.claim_for_order(serial, "Filter", until)
    assert claimed is not None
    assert (claimed.order.state, claimed.order.instance_id) == (OrderState.REQUESTED, None)


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        ({"subscribed": False}, "not subscribed"),
        ({"auto_reorder": False}, "automatic reorder off"),
        ({"cancels": 2}, "second cancel since refill"),
        ({"state": OrderState.PLACED}, "an order is open"),
    ],
)
def test_claim_refused_when_policy_forbids(
    repo: StateRepository, serial: str, setup: dict[str, Any], why: str
) -> None:
    # Given a slot in the situation named by `why`
    repo.upsert_subscription(
        serial,
        "Filter",
        subscribed=setup.get("subscribed", True),
        asin="B00FILTER1",
        quantity=2,
        unit="count",
        default_policy=SlotPolicy(auto_reorder=setup.get("auto_reorder", True)),
    )
    repo.set_slot_order(
        serial,
        "Filter",
        expected_states={OrderState.NONE},
        new=SlotOrder(
            state=setup.get("state", OrderState.NONE), cancels_since_refill=setup.get("cancels", 0)
        ),
    )
    before = repo.get_slot(serial, "Filter")
    # When a claim is attempted
    claimed = repo.claim_for_order(serial, "Filter", NOW)
    # Then it is refused and nothing changed
    assert claimed is None, why
    assert repo.get_slot(serial, "Filter") == before


def test_claim_on_missing_slot_is_none_and_creates_nothing(
    repo: StateRepository, serial: str, dynamodb: Any
) -> None:
    # Given no slot
    # When claimed
    # Then None, and no item appears
    assert repo.claim_for_order(serial, "Ghost", NOW) is None
    assert raw_item(dynamodb, schema.slot_key(serial, "Ghost")) is None


def test_release_claim_only_from_requested(repo: StateRepository, serial: str, dynamodb: Any) -> None:
    # Given a claimed slot
    subscribed_slot(repo, serial)
    repo.claim_for_order(serial, "Filter", NOW)
    # When released twice
    released = repo.release_claim(serial, "Filter")
    again = repo.release_claim(serial, "Filter")
    # Then the first moves it back to NONE (claimable again), the second is refused
    assert released is not None and released.order.state is OrderState.NONE
    assert again is None
    assert "orderRequestedAt" not in raw_item(dynamodb, schema.slot_key(serial, "Filter"))
    assert repo.claim_for_order(serial, "Filter", NOW) is not None


def test_set_slot_order_follows_the_lifecycle_and_refuses_unexpected_states(
    repo: StateRepository, serial: str, dynamodb: Any
) -> None:
    # Given a claimed slot
    subscribed_slot(repo, serial)
    repo.claim_for_order(serial, "Filter", NOW)
    delivery = NOW + timedelta(days=3)
    # When DRS confirms the order
    placed = repo.set_slot_order(
        serial,
        "Filter",
        expected_states={OrderState.REQUESTED},
        new=SlotOrder(state=OrderState.PLACED, instance_id="amzn1.order.1", estimated_delivery_date=delivery),
    )
    # Then the slot holds the placed order
    assert placed is not None
    assert placed.order == SlotOrder(
        state=OrderState.PLACED, instance_id="amzn1.order.1", estimated_delivery_date=delivery
    )
    # When a duplicate confirmation (expects REQUESTED) arrives
    duplicate = repo.set_slot_order(
        serial, "Filter", expected_states={OrderState.REQUESTED}, new=SlotOrder(state=OrderState.PLACED)
    )
    # Then it is refused and the slot is unchanged
    assert duplicate is None
    assert repo.get_slot(serial, "Filter") == placed
    # When the customer cancels: back to NONE with a cooldown
    cooled = repo.set_slot_order(
        serial,
        "Filter",
        expected_states={OrderState.PLACED, OrderState.SHIPPED},
        new=SlotOrder(state=OrderState.NONE, cooldown_until=NOW + timedelta(days=5), cancels_since_refill=1),
    )
    # Then the order fields are removed, the cooldown and cancel count set
    assert cooled is not None
    assert cooled.order == SlotOrder(cooldown_until=NOW + timedelta(days=5), cancels_since_refill=1)
    item = raw_item(dynamodb, schema.slot_key(serial, "Filter"))
    assert "orderInstanceId" not in item and "estimatedDeliveryDate" not in item
    assert "orderRequestedAt" not in item
    # When a transition targets a missing slot
    # Then None, and no item appears
    assert repo.set_slot_order(serial, "Ghost", expected_states={OrderState.NONE}, new=SlotOrder()) is None
    assert raw_item(dynamodb, schema.slot_key(serial, "Ghost")) is None
    with pytest.raises(ValueError):
        repo.set_slot_order(serial, "Filter", expected_states=set(), new=SlotOrder())


# --- orders -------------------------------------------------------------------------------------


def test_put_and_get_order_round_trip(repo: StateRepository, serial: str) -> None:
    # Given an order with every field
    order = Order(
        serial=serial,
        instance_id="amzn1.dash.v2.o.ABC",
        slot_id="Filter",
        state=OrderState.SHIPPED,
        is_test=True,
        asin="B00FILTER1",
        quantity=1.5,
        unit="liter",
        placed_at=NOW,
        estimated_delivery_date=NOW + timedelta(days=3),
        last_notification_time=NOW + timedelta(hours=5),
    )
    # When it is stored and read back
    repo.put_order(order)
    # Then it is equal; an unknown order is None
    assert repo.get_order(serial, order.instance_id) == order
    assert repo.get_order(serial, "unknown") is None


# --- property: one claim wins ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rival_repos(dynamodb: Any) -> list[StateRepository]:
    # Separate repositories stand for separate Lambda invocations sharing the table.
    return [StateRepository(TABLE, dynamodb=dynamodb) for _ in range(3)]


_claim = st.tuples(st.just("claim"), st.integers(0, 2), st.integers(0, 3600))
_other_write = st.tuples(
    st.sampled_from(["on_hand", "policy", "resubscribe"]), st.integers(0, 2), st.integers(1, 5)
)
# At least two claims, mixed with other writes to the same slot, in any order.
_interleaving = st.tuples(
    st.lists(_claim, min_size=2, max_size=6), st.lists(_other_write, max_size=5)
).flatmap(lambda parts: st.permutations(parts[0] + parts[1]))


@settings(max_examples=30, deadline=None)
@given(steps=_interleaving)
def test_any_interleaving_of_claims_yields_exactly_one_success(
    rival_repos: list[StateRepository], steps: list[tuple[str, int, int]]
) -> None:
    # Given a fresh claimable slot, and claims from several invocations interleaved with other writes
    serial = f"SN-PROP-{next(_serials):06d}"
    subscribed_slot(rival_repos[0], serial)
    successes = 0
    # When the steps run in the generated order
    for kind, who, amount in steps:
        repo = rival_repos[who]
        if kind == "claim":
            successes += repo.claim_for_order(serial, "Filter", NOW + timedelta(seconds=amount)) is not None
        elif kind == "on_hand":
            repo.add_on_hand(serial, "Filter", amount)
        elif kind == "policy":
            repo.update_policy(serial, "Filter", SlotPolicy(threshold_fraction=0.4))
        else:
            subscribed_slot(repo, serial)
    # Then exactly one claim won and the slot is REQUESTED
    assert successes == 1
    assert rival_repos[0].get_slot(serial, "Filter", consistent=True).order.state is OrderState.REQUESTED


@settings(max_examples=30, deadline=None)
@given(steps=st.lists(st.sampled_from(["claim", "release"]), min_size=1, max_size=12))
def test_claims_and_releases_never_hold_two_claims_at_once(
    rival_repos: list[StateRepository], steps: list[str]
) -> None:
    # Given a fresh claimable slot, and a sequence of claims and releases
    serial = f"SN-PROP-{next(_serials):06d}"
    subscribed_slot(rival_repos[0], serial)
    held = False
    # When each step runs
    for n, step in enumerate(steps):
        repo = rival_repos[n % len(rival_repos)]
        if step == "claim":
            won = repo.claim_for_order(serial, "Filter", NOW) is not None
            # Then a claim wins exactly when no claim is held
            assert won is (not held)
            held = True
        else:
            released = repo.release_claim(serial, "Filter") is not None
            # Then a release succeeds exactly when a claim is held
            assert released is held
            held = False
