"""The simulator's own notifications drive the notification function: the DRS + LWA simulator publishes
to a moto SNS topic as its order and device flows happen, the SQS queue behind it feeds the handler.

Linking and reordering are done here the way the backend does them (token vault, state repository, DRS
client through ``call_drs``), so these tests only depend on the notification path being right.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from drs_core import dependencies
from drs_core.adapters.notification_store import NotificationStore
from drs_core.clock import ManualClock
from drs_core.domain.models import Device, DeviceStatus, OrderState
from drs_core.domain.order_lifecycle import (
    CUSTOMER_CANCEL_COOLDOWN,
    DELIVERY_GRACE,
    Change,
    OrderEvent,
    apply,
)
from drs_core.services import devices
from drs_core.services.drs_calls import call_drs
from drs_core.services.notifications import settle_deliveries
from sandbox.simulator import SimulatorServer
from sandbox.simulator.control import SimulatorControl
from tests.support.notifications import CLIENT_ID, SnsSqsPath, TopicPublisher

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

MODEL_ID = "WaterFilterPro"
SLOTS: dict[str, dict[str, Any] | None] = {
    "Filter": {"asin": "B00FILTER1", "quantity": 2, "unit": "count"},
    "Cleaner": None,
}


@dataclass
class World:
    """Simulated Amazon, our backend's adapters and the notification function, on one manual clock."""

    sim: SimulatorControl
    path: SnsSqsPath
    module: ModuleType
    store: NotificationStore
    clock: ManualClock
    context: Any
    aws: Any

    def deliver(self) -> dict[str, Any]:
        """Everything the simulator published so far, through SQS, to the handler."""
        event = self.path.drain_event()
        answer = self.module.handler(event, self.context)
        self.path.acknowledge(event, answer)
        return answer

    def link(
        self, *, is_test_device: bool = False, customer_id: str | None = None, serial: str | None = None
    ):
        """The customer consents, our backend exchanges the code and links the device."""
        customer = customer_id or self.sim.create_customer()["customerId"]
        serial = serial or f"SN-{uuid.uuid4().hex[:10]}"
        code, redirect_uri = self.sim.authorize(
            customer, model_id=MODEL_ID, serial=serial, slots=SLOTS, is_test_device=is_test_device
        )
        grant = dependencies.lwa_client().exchange_code(code, redirect_uri)
        self.store.link_device(
            Device(
                serial=serial, model_id=MODEL_ID, is_test_device=is_test_device, linked_at=self.clock.now()
            ),
            owner_id=customer,
        )
        dependencies.token_vault().store(serial, grant)
        return serial, customer

    def reorder(self, serial: str, slot_id: str) -> str:
        """Claim the slot and replenish through DRS, as the reorder function does; the order id."""
        claimed = self.store.claim_for_order(serial, slot_id, self.clock.now())
        assert claimed is not None
        result = call_drs(
            serial,
            lambda token: dependencies.drs_client().replenish(token, slot_id),
            vault=dependencies.token_vault(),
            repository=self.store,
        )
        assert result.order_placed and result.event_instance_id
        placed = apply(
            claimed.order, Change(OrderEvent.PLACE, self.clock.now(), instance_id=result.event_instance_id)
        )
        self.store.set_slot_order(serial, slot_id, expected_states={OrderState.REQUESTED}, new=placed)
        return result.event_instance_id

    def tokens(self, serial: str) -> dict[str, Any] | None:
        answer = self.aws.dynamodb.get_item(TableName=self.aws.tokens_table, Key={"serial": {"S": serial}})
        return answer.get("Item")


@pytest.fixture
def world(aws, clock, lambda_context, monkeypatch) -> Iterator[World]:
    path = SnsSqsPath()
    with SimulatorServer(port=0, clock=clock, publisher=TopicPublisher(path), client_id=CLIENT_ID) as server:
        for name, value in {
            "DRS_ENDPOINT": server.url,
            "LWA_ENDPOINT": server.url,
            "HTTP_READ_TIMEOUT": "5",
            "HTTP_MAX_ATTEMPTS": "2",
        }.items():
            monkeypatch.setenv(name, value)
        dependencies.reset()
        yield World(
            sim=SimulatorControl(server.url),
            path=path,
            module=importlib.import_module("functions.notifications.handler"),
            store=NotificationStore(aws.state_table),
            clock=clock,
            context=lambda_context,
            aws=aws,
        )


@pytest.mark.parametrize("version", ["1", "2"])
def test_registration_order_shipment_and_inferred_delivery(world, version):
    # Given the simulator publishing in the v1 or v2 shape, and a device our backend links
    world.sim.configure_notifications(version=version)
    serial, _ = world.link()
    # When the registration's notifications arrive (DeviceRegistered, SubscriptionChanged)
    assert world.deliver() == {"batchItemFailures": []}
    # Then the slots are known from DRS alone: Filter picked, Cleaner not
    device, slots = world.store.get_device_with_slots(serial)
    assert device.status is DeviceStatus.LINKED and device.owner_id is not None
    assert {s.slot_id: s.subscribed for s in slots} == {"Filter": True, "Cleaner": False}
    # When the backend reorders and the OrderPlaced arrives
    instance_id = world.reorder(serial, "Filter")
    world.deliver()
    # Then the slot knows the order and its delivery date
    order = world.sim.device(serial)["orders"][0]
    slot = world.store.get_slot(serial, "Filter")
    assert (slot.order.state, slot.order.instance_id) == (OrderState.PLACED, instance_id)
    assert slot.order.estimated_delivery_date is not None
    assert slot.order.estimated_delivery_date.isoformat().startswith(order["estimatedDeliveryDate"][:19])
    # When Amazon ships it
    world.sim.order_action(instance_id, "ship")
    world.deliver()
    # Then the slot is SHIPPED and the package is stock on hand
    slot = world.store.get_slot(serial, "Filter")
    assert slot.order.state is OrderState.SHIPPED and slot.on_hand_quantity == 2
    # When the estimated delivery date plus grace passes, Then delivery is inferred
    world.clock.advance(
        (slot.order.estimated_delivery_date + DELIVERY_GRACE - world.clock.now()).total_seconds()
    )
    settled = settle_deliveries(serial, [slot], repository=world.store)
    assert [s.order.state for s in settled] == [OrderState.NONE]


def test_customer_cancel_with_duplicated_and_reordered_delivery(world):
    # Given the simulator duplicating every notification and holding some back (v1)
    world.sim.configure_notifications(version="1", duplicateRate=1.0, reorderRate=0.5, seed=7)
    serial, _ = world.link()
    world.sim.advance_clock(1)  # releases a held-back registration message
    world.deliver()
    instance_id = world.reorder(serial, "Filter")
    # When the customer cancels an hour later and every held-back message has gone out
    world.sim.advance_clock(3600)
    cancelled_at = world.clock.now()
    world.sim.order_action(instance_id, "cancel")
    world.sim.advance_clock(1)
    answer = world.deliver()
    # Then nothing failed, and the slot ends CANCELLED with one customer cancel and its cooldown
    assert answer == {"batchItemFailures": []}
    published = world.sim.notifications()
    assert len(published) > len({n["envelope"]["MessageId"] for n in published})  # duplicates happened
    slot = world.store.get_slot(serial, "Filter")
    assert slot.order.state is OrderState.CANCELLED and slot.order.instance_id == instance_id
    assert slot.order.cooldown_until == cancelled_at + CUSTOMER_CANCEL_COOLDOWN
    assert slot.order.cancels_since_refill == 1
    assert world.store.get_slot(serial, "Cleaner").subscribed is False


def test_test_order_cancel_has_no_cooldown(world):
    # Given a simulated DRS that does send OrderCancelled for cancelled test orders (no source says it
    # does), and a test device with a test order
    world.sim.configure_notifications(testCancelNotifications=True)
    serial, _ = world.link(is_test_device=True)
    world.deliver()
    instance_id = world.reorder(serial, "Filter")
    # When the test order is cancelled through DRS's cancel-test-order call
    dependencies.drs_client().cancel_test_orders(
        dependencies.token_vault().access_token(serial), slot_id="Filter"
    )
    world.deliver()
    # Then the slot is CANCELLED without cooldown
    slot = world.store.get_slot(serial, "Filter")
    assert (slot.order.state, slot.order.instance_id) == (OrderState.CANCELLED, instance_id)
    assert slot.order.cooldown_until is None and slot.order.cancels_since_refill == 0


@pytest.mark.parametrize("notified", [False, True], ids=["no-notification", "notification"])
def test_cancelling_test_orders_updates_the_slot_from_drs_answer_with_or_without_a_notification(
    world, notified
):
    # Given a simulated DRS that does (or does not) send OrderCancelled for cancelled test orders, and a
    # test device with a test order open on Filter
    world.sim.configure_notifications(testCancelNotifications=notified)
    serial, customer = world.link(is_test_device=True)
    world.deliver()
    instance_id = world.reorder(serial, "Filter")
    world.deliver()
    published = len(world.sim.notifications())
    # When the app cancels the device's test orders
    statuses = devices.cancel_test_orders(
        serial,
        None,
        owner_id=customer,
        drs=dependencies.drs_client(),
        vault=dependencies.token_vault(),
        repository=world.store,
    )
    # Then DRS's answer alone (NO_ORDER_IN_PROGRESS) moved the slot: CANCELLED, no cooldown, no count
    assert {s.slot_id: s.order_status for s in statuses} == {
        "Filter": "NO_ORDER_IN_PROGRESS",
        "Cleaner": "NO_ORDER_IN_PROGRESS",
    }
    slot = world.store.get_slot(serial, "Filter", consistent=True)
    assert (slot.order.state, slot.order.instance_id) == (OrderState.CANCELLED, instance_id)
    assert slot.order.cooldown_until is None and slot.order.cancels_since_refill == 0
    assert world.store.order_progress(serial, instance_id).state is OrderState.CANCELLED
    # And the slot without an order is left alone
    assert world.store.get_slot(serial, "Cleaner").order.state is OrderState.NONE
    # And the notification, when the world sends one, arrives late and changes nothing
    sent = [n["envelope"]["Message"] for n in world.sim.notifications()[published:]]
    assert len(sent) == (1 if notified else 0)
    if notified:
        assert world.deliver() == {"batchItemFailures": []}
    assert world.store.get_slot(serial, "Filter", consistent=True).order == slot.order
    # And the slot may be ordered again at once (a test cancel starts no cooldown)
    assert world.reorder(serial, "Filter") != instance_id


def test_subscription_change_on_amazon(world):
    # Given a linked device whose registration notifications were applied
    serial, _ = world.link()
    world.deliver()
    # When the customer picks a product for Cleaner and clears Filter on Amazon
    world.sim.set_subscription(
        serial, {"Cleaner": {"asin": "B00CLEAN01", "quantity": 1.5, "unit": "liter"}, "Filter": None}
    )
    world.deliver()
    # Then the slots follow
    cleaner, filter_slot = world.store.get_slot(serial, "Cleaner"), world.store.get_slot(serial, "Filter")
    assert (cleaner.subscribed, cleaner.asin, cleaner.original_quantity) == (True, "B00CLEAN01", 1.5)
    assert (filter_slot.subscribed, filter_slot.asin) == (False, None)


def test_deregistration_on_amazon_destroys_tokens(world):
    # Given a linked device, a minute later
    serial, _ = world.link()
    world.deliver()
    world.sim.advance_clock(60)
    # When the customer deregisters it on Amazon
    world.sim.deregister_device(serial)
    world.deliver()
    # Then our tokens are destroyed and the device is DEREGISTERED
    assert world.tokens(serial) is None
    assert world.store.get_device(serial).status is DeviceStatus.DEREGISTERED


def test_relinking_keeps_the_new_tokens_despite_the_old_registrations_deregistration(world):
    # Given a linked device that its owner links again (DRS deregisters the old registration first)
    serial, customer = world.link()
    world.deliver()
    world.sim.advance_clock(60)
    world.link(customer_id=customer, serial=serial)
    # When the old registration's DeviceDeregistered arrives after the new link
    world.deliver()
    # Then the device stays LINKED with its new tokens, which still work with DRS
    assert world.store.get_device(serial).status is DeviceStatus.LINKED
    assert world.tokens(serial) is not None
    world.reorder(serial, "Filter")
