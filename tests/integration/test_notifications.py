"""The notification function end to end in moto: DRS message → SNS topic → SQS queue → the real SQS event
→ ``functions/notifications/handler.py`` → state table. Messages are built with the simulator's own
builders (``sandbox/simulator/notifications.py``), in the v1 and the v2 shape.
"""

from __future__ import annotations

import copy
import importlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drs_core import dependencies, schema
from drs_core.adapters.notification_store import NotificationStore
from drs_core.clock import ManualClock, to_iso
from drs_core.domain.models import Device, DeviceStatus, OrderState, SlotOrder
from drs_core.domain.order_lifecycle import CUSTOMER_CANCEL_COOLDOWN, DELIVERY_GRACE
from drs_core.services.notifications import settle_deliveries
from sandbox.simulator import notifications as sim_notes
from sandbox.simulator.records import Product
from tests.support import logs
from tests.support.notifications import DrsMessages, SnsSqsPath

captured_logs = logs.captured_logs

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

FILTER = Product("B00FILTER1", 2, "count")
CLEANER = Product("B00CLEAN01", 1.5, "liter")
OTHER_FILTER = Product("B00FILTER2", 4, "count")
VERSIONS = ["1", "2"]


@dataclass(frozen=True)
class Grant:
    access_token: str
    refresh_token: str
    expires_in: int = 3600


@dataclass
class Backend:
    """The handler, the SNS → SQS path and the adapters to set up and inspect state."""

    module: ModuleType
    path: SnsSqsPath
    store: NotificationStore
    clock: ManualClock
    aws: Any
    context: Any

    def deliver(self) -> dict[str, Any]:
        """Hand everything queued to the handler as one SQS event; its partial batch response."""
        event = self.path.drain_event()
        assert event["Records"], "nothing was delivered to the queue"
        answer = self.module.handler(event, self.context)
        self.path.acknowledge(event, answer)
        return answer

    def send(self, message: dict[str, Any], version: str) -> dict[str, Any]:
        self.path.publish(message, version)
        return self.deliver()

    def link(
        self,
        serial: str,
        slots: dict[str, Product | None],
        *,
        is_test: bool = False,
        claim: str | None = None,
        model_id: str = "WaterFilterPro",
    ) -> None:
        """A device linked through our backend: device item, slots, tokens; optionally a claimed slot."""
        now = self.clock.now()
        self.store.link_device(
            Device(serial=serial, model_id=model_id, is_test_device=is_test, linked_at=now),
            owner_id="amzn1.account.OWNER",
        )
        for slot_id, product in slots.items():
            self.store.upsert_subscription(
                serial,
                slot_id,
                subscribed=product is not None,
                asin=product.asin if product else None,
                quantity=product.quantity if product else None,
                unit=product.unit if product else None,
            )
        dependencies.token_vault().store(serial, Grant(f"Atza|{serial}", f"Atzr|{serial}"))
        if claim:
            assert self.store.claim_for_order(serial, claim, now) is not None

    def tokens(self, serial: str) -> dict[str, Any] | None:
        item = self.aws.dynamodb.get_item(TableName=self.aws.tokens_table, Key={"serial": {"S": serial}})
        return item.get("Item")

    def item(self, key: dict[str, str]) -> dict[str, Any] | None:
        answer = self.aws.dynamodb.get_item(
            TableName=self.aws.state_table, Key={k: {"S": v} for k, v in key.items()}, ConsistentRead=True
        )
        return answer.get("Item")


@pytest.fixture
def backend(aws, clock, lambda_context) -> Backend:
    module = importlib.import_module("functions.notifications.handler")
    return Backend(
        module=module,
        path=SnsSqsPath(),
        store=NotificationStore(aws.state_table),
        clock=clock,
        aws=aws,
        context=lambda_context,
    )


def new_serial() -> str:
    return f"SN-{uuid.uuid4().hex[:12]}"


def order_messages(serial: str, *, is_test: bool = False) -> tuple[DrsMessages, Any]:
    drs = DrsMessages(serial=serial, is_test_device=is_test)
    return drs, drs.order("amzn1.dash.v2.o.ORDER1", "Filter", FILTER, placed_at=None)


# --- each type, v1 and v2, through SNS → SQS --------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_order_placed_moves_the_claimed_slot_to_placed(backend, version):
    # Given a linked device whose Filter slot is claimed for an order
    serial = new_serial()
    backend.link(serial, {"Filter": FILTER}, claim="Filter")
    drs, order = order_messages(serial)
    backend.clock.advance(5)
    order.placed_at = backend.clock.now()
    # When DRS's OrderPlaced travels SNS → SQS → handler
    answer = backend.send(drs.message(sim_notes.ORDER_PLACED, order.placed_at, version, order=order), version)
    # Then nothing failed, the slot is PLACED with the order id and delivery date, and the history knows it
    assert answer == {"batchItemFailures": []}
    slot = backend.store.get_slot(serial, "Filter")
    assert slot.order.state is OrderState.PLACED
    assert slot.order.instance_id == order.instance_id
    assert slot.order.estimated_delivery_date == order.estimated_delivery_date
    history = backend.store.get_order(serial, order.instance_id)
    assert history.state is OrderState.PLACED and history.placed_at == order.placed_at
    assert history.quantity == 2 and history.unit == "count"
    assert history.asin == ("B00FILTER1" if version == "2" else None)  # v1 carries no ASIN
    assert history.last_notification_time == order.placed_at


WF1_FILTER_PACK = Product("B0WFILTER01", 1, "count")  # what Amazon sells: one cartridge


def _ship(backend, serial: str, version: str, *, model_id: str, product: Product, is_test: bool = False):
    """A placed order of ``product`` for Filter, then its ItemShipped; the slot afterwards, and the order."""
    drs = DrsMessages(serial=serial, model_id=model_id, is_test_device=is_test)
    order = drs.order("amzn1.dash.v2.o.ORDER1", "Filter", product, placed_at=backend.clock.now())
    backend.store.set_slot_order(
        serial,
        "Filter",
        expected_states={OrderState.REQUESTED},
        new=SlotOrder(OrderState.PLACED, instance_id=order.instance_id),
    )
    backend.clock.advance(3600)
    answer = backend.send(
        drs.message(sim_notes.ITEM_SHIPPED, backend.clock.now(), version, order=order), version
    )
    assert answer == {"batchItemFailures": []}
    return backend.store.get_slot(serial, "Filter"), order


@pytest.mark.parametrize("version", VERSIONS)
def test_item_shipped_marks_shipped_and_adds_stock_on_hand(backend, version):
    # Given a slot whose order was placed (our replenish call recorded it)
    serial = new_serial()
    backend.link(serial, {"Filter": FILTER}, claim="Filter")
    # When ItemShipped arrives
    slot, order = _ship(backend, serial, version, model_id="WaterFilterPro", product=FILTER)
    # Then the slot is SHIPPED with the delivery date, and the shipped quantity is stock on hand
    assert slot.order.state is OrderState.SHIPPED
    assert slot.order.estimated_delivery_date == order.estimated_delivery_date
    assert slot.on_hand_quantity == 2
    assert backend.store.get_order(serial, order.instance_id).state is OrderState.SHIPPED


# --- units: the model catalog, not productInfo, says how much a pack holds ---------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_item_shipped_adds_packs_times_the_catalogs_pack_size_in_the_slots_unit(backend, version):
    # Given an AquaPure-WF1 whose Filter slot measures litres (150 L a cartridge, says the catalog)
    serial = new_serial()
    backend.link(serial, {"Filter": WF1_FILTER_PACK}, claim="Filter", model_id="AquaPure-WF1")
    # When its order of "2 count" (two cartridges; v1 names no ASIN: the slot's is used) ships
    slot, _ = _ship(
        backend, serial, version, model_id="AquaPure-WF1", product=Product("B0WFILTER01", 2, "count")
    )
    # Then 300 L are on hand, not "2"
    assert slot.order.state is OrderState.SHIPPED
    assert slot.on_hand_quantity == 300


@pytest.mark.parametrize("version", VERSIONS)
def test_a_shipped_test_order_adds_no_stock(backend, version):
    # Given a test device's placed test order (test orders do not ship; the simulator lets them)
    serial = new_serial()
    backend.link(serial, {"Filter": WF1_FILTER_PACK}, claim="Filter", model_id="AquaPure-WF1", is_test=True)
    # When an ItemShipped arrives for it
    slot, _ = _ship(backend, serial, version, model_id="AquaPure-WF1", product=WF1_FILTER_PACK, is_test=True)
    # Then the slot follows the order, but nothing is added to stock on hand
    assert slot.order.state is OrderState.SHIPPED
    assert slot.on_hand_quantity == 0


def test_an_unknown_model_or_asin_adds_no_stock_in_a_wrong_unit(backend, captured_logs):
    # Given a device of a model the catalog does not know, and one whose ASIN it does not know
    unknown_model, unknown_asin = new_serial(), new_serial()
    backend.link(unknown_model, {"Filter": FILTER}, claim="Filter", model_id="NotInCatalog")
    backend.link(unknown_asin, {"Filter": WF1_FILTER_PACK}, claim="Filter", model_id="AquaPure-WF1")
    # When their orders ship
    first, _ = _ship(backend, unknown_model, "2", model_id="NotInCatalog", product=FILTER)
    second, _ = _ship(
        backend, unknown_asin, "2", model_id="AquaPure-WF1", product=Product("B0OTHER001", 1, "count")
    )
    # Then both are SHIPPED, no stock is guessed at, and the misses are logged and counted
    assert (first.order.state, first.on_hand_quantity) == (OrderState.SHIPPED, 0)
    assert (second.order.state, second.on_hand_quantity) == (OrderState.SHIPPED, 0)
    out = captured_logs.readouterr().out
    assert out.count("shipped quantity unknown to the model catalog") == 2
    assert '"CatalogMiss"' in out


@pytest.mark.parametrize("version", VERSIONS)
def test_subscription_takes_unit_and_full_quantity_from_the_catalog_not_product_info(backend, version):
    # Given an AquaPure-WF1 linked with no product picked, and a device of a model the catalog lacks
    serial, stranger = new_serial(), new_serial()
    backend.link(serial, {"Filter": None}, model_id="AquaPure-WF1")
    backend.link(stranger, {"Filter": None}, model_id="NotInCatalog")
    # When the customers pick a pack ("1 count") for Filter on Amazon
    for each, model_id in ((serial, "AquaPure-WF1"), (stranger, "NotInCatalog")):
        drs = DrsMessages(serial=each, model_id=model_id)
        message = drs.message(
            sim_notes.SUBSCRIPTION_CHANGED,
            backend.clock.advance(1),
            version,
            slots={"Filter": WF1_FILTER_PACK},
        )
        assert backend.send(message, version) == {"batchItemFailures": []}
    # Then the known model's slot is 150 L full; the unknown one keeps its quantity and unit (none yet)
    known, unknown = backend.store.get_slot(serial, "Filter"), backend.store.get_slot(stranger, "Filter")
    assert (known.subscribed, known.original_quantity, known.unit) == (True, 150, "L")
    assert (unknown.subscribed, unknown.original_quantity, unknown.unit) == (True, 0, None)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("is_test", [False, True], ids=["customer-order", "test-order"])
def test_order_cancelled_closes_the_order_with_a_cooldown_unless_a_test_order(backend, version, is_test):
    # Given a placed order on a (test or real) device
    serial = new_serial()
    backend.link(serial, {"Filter": FILTER}, claim="Filter", is_test=is_test)
    drs, order = order_messages(serial, is_test=is_test)
    order.placed_at = backend.clock.now()
    backend.send(drs.message(sim_notes.ORDER_PLACED, order.placed_at, version, order=order), version)
    # When OrderCancelled arrives an hour later
    cancelled_at = backend.clock.advance(3600)
    answer = backend.send(drs.message(sim_notes.ORDER_CANCELLED, cancelled_at, version, order=order), version)
    # Then the slot is CANCELLED; a customer's cancel starts the 5-day cooldown and counts, a test one not
    assert answer == {"batchItemFailures": []}
    slot = backend.store.get_slot(serial, "Filter")
    assert slot.order.state is OrderState.CANCELLED
    assert slot.order.instance_id == order.instance_id
    if is_test:
        assert slot.order.cooldown_until is None and slot.order.cancels_since_refill == 0
    else:
        assert slot.order.cooldown_until == cancelled_at + CUSTOMER_CANCEL_COOLDOWN
        assert slot.order.cancels_since_refill == 1
    history = backend.store.get_order(serial, order.instance_id)
    assert history.state is OrderState.CANCELLED and history.is_test is is_test


@pytest.mark.parametrize("version", VERSIONS)
def test_subscription_changed_updates_creates_and_clears_slots(backend, version):
    # Given a device with Filter picked and Cleaner not
    serial = new_serial()
    backend.link(serial, {"Filter": FILTER, "Cleaner": None})
    drs = DrsMessages(serial=serial)
    # When the customer clears Filter, picks Cleaner and a new slot Spare appears
    slots = {"Filter": None, "Cleaner": CLEANER, "Spare": OTHER_FILTER}
    at = backend.clock.advance(60)
    answer = backend.send(drs.message(sim_notes.SUBSCRIPTION_CHANGED, at, version, slots=slots), version)
    # Then every named slot has the new subscribed flag; v2 also brings (or clears) the product
    assert answer == {"batchItemFailures": []}
    filter_slot, cleaner, spare = (backend.store.get_slot(serial, s) for s in ("Filter", "Cleaner", "Spare"))
    assert (filter_slot.subscribed, cleaner.subscribed, spare.subscribed) == (False, True, True)
    if version == "2":
        assert filter_slot.asin is None
        assert (cleaner.asin, cleaner.original_quantity, cleaner.unit) == ("B00CLEAN01", 1.5, "liter")
        assert (spare.asin, spare.original_quantity, spare.unit) == ("B00FILTER2", 4, "count")
    else:
        # v1 says only whether a slot is subscribed: products stay as they were
        assert filter_slot.asin == "B00FILTER1" and cleaner.asin is None and spare.asin is None
    assert spare.order.state is OrderState.NONE and spare.remaining_quantity == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_device_registered_records_an_unknown_device_without_owner(backend, version):
    # Given a device we have never seen
    serial = new_serial()
    drs = DrsMessages(serial=serial)
    # When DeviceRegistered arrives (the customer finished LWA before our app linked it)
    answer = backend.send(drs.message(sim_notes.DEVICE_REGISTERED, backend.clock.now(), version), version)
    # Then the device is recorded with its model, no owner and as not linked yet
    assert answer == {"batchItemFailures": []}
    device = backend.store.get_device(serial)
    assert device.model_id == "WaterFilterPro" and device.owner_id is None
    assert device.status is DeviceStatus.DEREGISTERED
    # And our app can still link it afterwards
    backend.link(serial, {"Filter": FILTER})
    assert backend.store.get_device(serial).owner_id == "amzn1.account.OWNER"


@pytest.mark.parametrize("version", VERSIONS)
def test_device_registered_never_touches_a_linked_device(backend, version):
    # Given a linked device
    serial = new_serial()
    backend.link(serial, {"Filter": FILTER})
    before = backend.store.get_device(serial)
    # When DeviceRegistered arrives after the link
    at = backend.clock.advance(1)
    backend.send(DrsMessages(serial=serial).message(sim_notes.DEVICE_REGISTERED, at, version), version)
    # Then owner, credential and status are unchanged
    after = backend.store.get_device(serial)
    assert (after.owner_id, after.credential_hash, after.status) == (
        before.owner_id,
        before.credential_hash,
        DeviceStatus.LINKED,
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_device_deregistered_destroys_tokens_and_marks_the_device(backend, version):
    # Given a linked device with tokens
    serial = new_serial()
    backend.link(serial, {"Filter": FILTER})
    assert backend.tokens(serial) is not None
    # When DeviceDeregistered arrives (the customer deregistered on Amazon.com)
    at = backend.clock.advance(60)
    answer = backend.send(
        DrsMessages(serial=serial).message(sim_notes.DEVICE_DEREGISTERED, at, version), version
    )
    # Then the tokens are gone and the device is DEREGISTERED
    assert answer == {"batchItemFailures": []}
    assert backend.tokens(serial) is None
    assert backend.store.get_device(serial).status is DeviceStatus.DEREGISTERED


# --- out of order, duplicates, stale -----------------------------------------------------------------


def test_a_late_order_placed_after_item_shipped_changes_nothing(backend):
    # Given ItemShipped applied to a claimed slot before its OrderPlaced arrived
    serial = new_serial()
    backend.link(serial, {"Filter": FILTER}, claim="Filter")
    drs, order = order_messages(serial)
    order.placed_at = backend.clock.advance(1)
    placed = drs.message(sim_notes.ORDER_PLACED, order.placed_at, "2", order=order)
    shipped = drs.message(sim_notes.ITEM_SHIPPED, backend.clock.advance(3600), "2", order=order)
    backend.send(shipped, "2")
    # When the late OrderPlaced arrives
    backend.send(placed, "2")
    # Then the slot stays SHIPPED with one shipment on hand; the history only learnt the placement time
    slot = backend.store.get_slot(serial, "Filter")
    assert slot.order.state is OrderState.SHIPPED and slot.on_hand_quantity == 2
    history = backend.store.get_order(serial, order.instance_id)
    assert history.state is OrderState.SHIPPED and history.placed_at == order.placed_at


def test_duplicates_add_stock_on_hand_once(backend, capsys):
    # Given a placed order
    serial = new_serial()
    backend.link(serial, {"Filter": FILTER}, claim="Filter")
    drs, order = order_messages(serial)
    order.placed_at = backend.clock.now()
    backend.send(drs.message(sim_notes.ORDER_PLACED, order.placed_at, "1", order=order), "1")
    shipped = drs.message(sim_notes.ITEM_SHIPPED, backend.clock.advance(60), "1", order=order)
    # When ItemShipped is delivered twice by SNS (same notificationId), and once more re-sent by DRS with
    # a new notificationId
    resent = copy.deepcopy(shipped)
    resent["notificationInfo"]["notificationId"] = f"amzn1.dash.notification.v1.{uuid.uuid4()}"
    for message in (shipped, shipped, resent):
        backend.path.publish(message, "1")
    capsys.readouterr()
    answer = backend.deliver()
    # Then the quantity is on hand once; the second copy was a duplicate, the re-send stale
    assert answer == {"batchItemFailures": []}
    assert backend.store.get_slot(serial, "Filter").on_hand_quantity == 2
    outcomes = [m["outcome"] for m in emitted_metrics(capsys.readouterr().out, "Notifications")]
    assert outcomes == ["applied", "duplicate", "stale"]


def test_a_retry_after_a_partial_failure_adds_stock_on_hand_once(backend, monkeypatch):
    # Given a placed order, and a history write that fails once, after the slot has moved
    serial = new_serial()
    backend.link(serial, {"Filter": FILTER}, claim="Filter")
    drs, order = order_messages(serial)
    order.placed_at = backend.clock.now()
    backend.send(drs.message(sim_notes.ORDER_PLACED, order.placed_at, "2", order=order), "2")
    record_order = NotificationStore.record_order
    failures = [RuntimeError("DynamoDB throttled the write")]

    def flaky_record_order(self, facts):
        if failures:
            raise failures.pop()
        return record_order(self, facts)

    monkeypatch.setattr(NotificationStore, "record_order", flaky_record_order)
    backend.path.publish(
        drs.message(sim_notes.ITEM_SHIPPED, backend.clock.advance(60), "2", order=order), "2"
    )
    event = backend.path.drain_event()
    # When ItemShipped fails half-way (the whole one-record batch fails), and SQS delivers it again
    with pytest.raises(BatchProcessingError):
        backend.module.handler(event, backend.context)
    second = backend.module.handler(event, backend.context)
    # Then the retry completed, and the quantity is on hand once
    assert second == {"batchItemFailures": []}
    slot = backend.store.get_slot(serial, "Filter")
    assert slot.order.state is OrderState.SHIPPED and slot.on_hand_quantity == 2
    assert backend.store.get_order(serial, order.instance_id).state is OrderState.SHIPPED


def test_a_stale_subscription_change_does_not_undo_a_newer_one(backend):
    # Given two subscription changes, the newer one (Filter cleared) applied first
    serial = new_serial()
    backend.link(serial, {"Filter": FILTER})
    drs = DrsMessages(serial=serial)
    older = drs.message(
        sim_notes.SUBSCRIPTION_CHANGED, backend.clock.advance(1), "2", slots={"Filter": OTHER_FILTER}
    )
    newer = drs.message(sim_notes.SUBSCRIPTION_CHANGED, backend.clock.advance(1), "2", slots={"Filter": None})
    backend.send(newer, "2")
    # When the older one arrives
    backend.send(older, "2")
    # Then the slot stays as the newer one left it
    slot = backend.store.get_slot(serial, "Filter")
    assert not slot.subscribed and slot.asin is None


def test_a_deregistration_older_than_the_link_keeps_the_new_tokens(backend):
    # Given a device re-linked after a deregistration that DRS published earlier
    serial = new_serial()
    drs = DrsMessages(serial=serial)
    deregistered = drs.message(sim_notes.DEVICE_DEREGISTERED, backend.clock.now(), "2")
    backend.clock.advance(2)
    backend.link(serial, {"Filter": FILTER})
    # When that (late) deregistration arrives
    backend.send(deregistered, "2")
    # Then the new link keeps its tokens and stays LINKED
    assert backend.tokens(serial) is not None
    assert backend.store.get_device(serial).status is DeviceStatus.LINKED


def test_an_order_notification_older_than_the_slots_claim_is_ignored(backend):
    # Given an ItemShipped of an earlier order, still in flight while the slot was claimed again
    serial = new_serial()
    drs, old_order = order_messages(serial)
    stale = drs.message(sim_notes.ITEM_SHIPPED, backend.clock.now(), "2", order=old_order)
    backend.clock.advance(timedelta(days=6).total_seconds())
    backend.link(serial, {"Filter": FILTER}, claim="Filter")
    # When it arrives
    backend.send(stale, "2")
    # Then the new claim is untouched and nothing was added on hand
    slot = backend.store.get_slot(serial, "Filter")
    assert slot.order.state is OrderState.REQUESTED and slot.order.instance_id is None
    assert slot.on_hand_quantity == 0


def test_delivery_is_inferred_after_the_estimated_date_plus_grace(backend):
    # Given a shipped order
    serial = new_serial()
    backend.link(serial, {"Filter": FILTER}, claim="Filter")
    drs, order = order_messages(serial)
    order.placed_at = backend.clock.now()
    backend.send(drs.message(sim_notes.ITEM_SHIPPED, order.placed_at, "2", order=order), "2")
    eta = order.estimated_delivery_date
    # When the report worker settles deliveries before and after the date plus grace
    early = settle_deliveries(
        serial, [backend.store.get_slot(serial, "Filter")], repository=backend.store, now=eta
    )
    late_now = eta + DELIVERY_GRACE
    settled = settle_deliveries(
        serial, [backend.store.get_slot(serial, "Filter")], repository=backend.store, now=late_now
    )
    # Then only the second one returns the slot to NONE, and the history is closed for good
    assert early == []
    assert [s.order.state for s in settled] == [OrderState.NONE]
    assert backend.store.get_slot(serial, "Filter").on_hand_quantity == 2  # delivered, not yet loaded
    assert backend.item(schema.order_key(serial, order.instance_id))["deliveredAt"] == {"S": to_iso(late_now)}
    # And a late duplicate ItemShipped (new notificationId) cannot reopen it
    resent = drs.message(sim_notes.ITEM_SHIPPED, order.placed_at, "2", order=order)
    backend.send(resent, "2")
    slot = backend.store.get_slot(serial, "Filter")
    assert slot.order.state is OrderState.NONE and slot.on_hand_quantity == 2


# --- unknown, malformed, unsupported ---------------------------------------------------------------


def test_an_order_notification_for_an_unknown_device_is_acknowledged_and_counted(backend, capsys):
    # Given a device we do not hold
    drs, order = order_messages(new_serial())
    order.placed_at = backend.clock.now()
    capsys.readouterr()
    # When an OrderPlaced for it arrives
    answer = backend.send(drs.message(sim_notes.ORDER_PLACED, order.placed_at, "2", order=order), "2")
    # Then it is acknowledged (not retried), counted, and nothing was written for it
    assert answer == {"batchItemFailures": []}
    output = capsys.readouterr().out
    assert emitted_metrics(output, "NotificationForUnknownDevice")
    assert [m["outcome"] for m in emitted_metrics(output, "Notifications")] == ["unknown"]
    assert backend.store.get_order(drs.serial, order.instance_id) is None


def test_one_malformed_record_fails_alone(backend):
    # Given a batch: a valid OrderPlaced, a message without its device, an unsupported type, a valid
    # SubscriptionChanged
    serial = new_serial()
    backend.link(serial, {"Filter": FILTER}, claim="Filter")
    drs, order = order_messages(serial)
    order.placed_at = backend.clock.now()
    broken = drs.message(sim_notes.ITEM_SHIPPED, order.placed_at, "2", order=order)
    del broken["deviceInfo"]
    unsupported = drs.message(sim_notes.DEVICE_REGISTERED, order.placed_at, "2")
    unsupported["notificationInfo"]["notificationType"] = "SomethingNewNotification"
    backend.path.publish(drs.message(sim_notes.ORDER_PLACED, order.placed_at, "2", order=order), "2")
    backend.path.publish(broken, "2")
    backend.path.publish(unsupported, "2")
    backend.path.publish(
        drs.message(sim_notes.SUBSCRIPTION_CHANGED, order.placed_at, "2", slots={"Filter": OTHER_FILTER}), "2"
    )
    event = backend.path.drain_event()
    broken_id = next(
        r["messageId"]
        for r in event["Records"]
        if "deviceInfo" not in json.loads(json.loads(r["body"])["Message"])
    )
    # When the batch is handled
    answer = backend.module.handler(event, backend.context)
    # Then exactly the malformed record is reported failed; the others were applied or acknowledged
    assert answer == {"batchItemFailures": [{"itemIdentifier": broken_id}]}
    slot = backend.store.get_slot(serial, "Filter")
    assert slot.order.state is OrderState.PLACED and slot.asin == "B00FILTER2"


def emitted_metrics(output: str, name: str) -> list[dict[str, Any]]:
    """The EMF documents printed for metric ``name``, with their dimension values."""
    documents = []
    for line in output.splitlines():
        try:
            document = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(document, dict) or "_aws" not in document:
            continue
        names = [m["Name"] for d in document["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]
        if name in names:
            documents.append(document)
    return documents


# --- property: any order, any duplicates, same final state -------------------------------------------


def scenario(serial: str, t0, kind: str, version: str, deregister: bool) -> list[dict[str, Any]]:
    """One order's notifications, two subscription changes and the device lifecycle, in time order."""
    drs, order = order_messages(serial)
    order.placed_at = t0 + timedelta(minutes=1)
    step = timedelta(minutes=10)
    messages = [
        drs.message(sim_notes.DEVICE_REGISTERED, t0 + step, version),
        drs.message(sim_notes.ORDER_PLACED, order.placed_at, version, order=order),
        drs.message(
            sim_notes.SUBSCRIPTION_CHANGED, t0 + 2 * step, version, slots={"Filter": FILTER, "Spare": CLEANER}
        ),
        drs.message(
            sim_notes.ITEM_SHIPPED if kind == "ship" else sim_notes.ORDER_CANCELLED,
            t0 + 3 * step,
            version,
            order=order,
        ),
        drs.message(sim_notes.SUBSCRIPTION_CHANGED, t0 + 4 * step, version, slots={"Filter": OTHER_FILTER}),
    ]
    if deregister:
        messages.append(drs.message(sim_notes.DEVICE_DEREGISTERED, t0 + 5 * step, version))
    return messages


def final_state(backend: Backend, serial: str) -> dict[str, Any]:
    """Every item of the device's partition and its tokens, minus write counters and the serial."""
    items = backend.aws.dynamodb.query(
        TableName=backend.aws.state_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": schema.device_pk(serial)}},
        ConsistentRead=True,
    )["Items"]
    state = {
        item["sk"]["S"]: {k: v for k, v in item.items() if k not in ("pk", "version", "reportBucket")}
        for item in items
    }
    state["tokens"] = backend.tokens(serial) is not None
    return state


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["ship", "cancel"]),
    version=st.sampled_from(VERSIONS),
    deregister=st.booleans(),
    data=st.data(),
)
def test_any_order_and_duplicates_give_the_in_order_once_only_state(backend, kind, version, deregister, data):
    # Given two fresh devices set up alike (fresh serials: each example starts from empty state), a
    # claimed slot on each, and the same scenario's notifications for each
    t0 = backend.clock.now()
    in_order_serial, shuffled_serial = new_serial(), new_serial()
    for serial in (in_order_serial, shuffled_serial):
        backend.link(serial, {"Filter": FILTER}, claim="Filter")
    in_order = scenario(in_order_serial, t0, kind, version, deregister)
    shuffled = data.draw(st.permutations(scenario(shuffled_serial, t0, kind, version, deregister)))
    # ... delivered shuffled, with some copies: SNS redeliveries (same id) and DRS re-sends (new id)
    copies = data.draw(
        st.lists(st.tuples(st.integers(0, len(shuffled) - 1), st.booleans(), st.integers(0, 20)), max_size=4)
    )
    delivery = list(shuffled)
    for index, new_id, position in copies:
        duplicate = copy.deepcopy(shuffled[index])
        if new_id:
            duplicate["notificationInfo"]["notificationId"] = f"amzn1.dash.notification.v1.{uuid.uuid4()}"
        delivery.insert(position % (len(delivery) + 1), duplicate)
    # When the first device gets its messages in order, once, and the second gets the shuffled delivery
    for message in in_order:
        backend.send(message, version)
    for message in delivery:
        backend.path.publish(message, version)
    answer = backend.deliver()
    # Then the two devices end in the same state
    assert answer == {"batchItemFailures": []}
    assert final_state(backend, shuffled_serial) == final_state(backend, in_order_serial)
