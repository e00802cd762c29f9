"""The daily visit asks DRS (issue 14, reconciliation): overdue open orders are checked with
``getOrderInfo`` and the subscription is re-read when DRS refuses a slot, and periodically.

The report worker function over moto and the simulator on loopback (``test_reporting``'s fixtures),
on one manual clock; the simulator publishes no notification to the backend here, so every
notification is, in effect, lost.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from drs_core import dependencies
from drs_core.domain.models import OrderState, SlotOrder
from drs_core.services.order_truth import RECHECK_MARGIN, SUBSCRIPTION_REREAD
from tests.integration.test_reporting import (
    CLEANER,
    FILTER,
    Reporting,
    job_for,
    reporting,
    simulator,
)

__all__ = ["reporting", "simulator"]  # the fixtures this module uses from test_reporting

pytestmark = pytest.mark.filterwarnings("ignore:This metric doesn't meet the requirements")


def visit(r: Reporting, serial: str) -> None:
    """One daily visit of ``serial`` by the worker function (a job of its own)."""
    r.sqs.send_message(QueueUrl=r.queue_url, MessageBody=job_for([serial], r.clock.now()).to_json())
    assert r.work(r.drain()) == []


def test_a_late_parcel_keeps_its_order_open_until_drs_says_delivered(reporting: Reporting) -> None:
    # Given a shipped order whose parcel comes 3 days after its estimate (the slot knows the estimate)
    r = reporting
    r.link("SN-LATE", {"Filter": FILTER}, is_test=False)
    r.use("SN-LATE", "Filter", remaining=0.2, rate=0.1)
    token = dependencies.token_vault().access_token("SN-LATE")
    order = dependencies.drs_client().replenish(token, "Filter").event_instance_id
    assert order
    r.control.order_action(order, "ship")
    r.control.delay_order(order, 3)
    eta = r.clock.now() + timedelta(days=3)
    repository = dependencies.repository()
    shipped = SlotOrder(OrderState.SHIPPED, instance_id=order, estimated_delivery_date=eta)
    repository.set_slot_order("SN-LATE", "Filter", expected_states={OrderState.NONE}, new=shipped)
    # When the worker visits 2 days after the estimate (the old inference would have freed the slot)
    r.clock.set(eta + RECHECK_MARGIN + timedelta(days=1))
    visit(r, "SN-LATE")
    open_then = repository.get_slot("SN-LATE", "Filter").order
    # and again the day after the parcel arrived
    r.clock.advance(2 * 86_400)
    visit(r, "SN-LATE")
    # Then DRS was asked each time; the slot kept the order while DRS said shipped, and is free now
    assert len(r.successes("getOrderInfo")) == 2
    assert (open_then.state, open_then.instance_id) == (OrderState.SHIPPED, order)
    assert repository.get_slot("SN-LATE", "Filter").order.state is OrderState.NONE


def test_a_lost_subscription_change_is_caught_by_the_periodic_reread(reporting: Reporting) -> None:
    # Given a device whose Cleaner had no product at linking; the customer picks one later on Amazon,
    # and the SubscriptionChanged never reaches the backend
    r = reporting
    r.link("SN-SUB", {"Filter": FILTER, "Cleaner": None})
    r.control.set_subscription("SN-SUB", {"Cleaner": CLEANER.to_json()})
    # When the worker visits the next day, then a week after the link
    r.clock.advance(86_400)
    visit(r, "SN-SUB")
    before = dependencies.repository().get_slot("SN-SUB", "Cleaner")
    r.clock.set(r.clock.now() + SUBSCRIPTION_REREAD)
    visit(r, "SN-SUB")
    # Then the subscription was read once, when due, and the Cleaner is subscribed to the product
    assert not before.subscribed
    assert [c["at"][:10] for c in r.successes("subscriptionInfo")] == ["2026-01-09"]
    after = dependencies.repository().get_slot("SN-SUB", "Cleaner")
    assert (after.subscribed, after.asin) == (True, CLEANER.asin)


def test_a_slot_drs_refuses_makes_the_visit_reread_the_subscription(reporting: Reporting) -> None:
    # Given a measured slot the customer cleared on Amazon, the notification lost
    r = reporting
    r.link("SN-GONE", {"Filter": FILTER, "Cleaner": CLEANER})
    r.use("SN-GONE", "Cleaner", remaining=1.0)
    dependencies.repository().upsert_subscription(
        "SN-GONE", "Ghost", subscribed=True, asin="B0GHOST", quantity=1, unit="count"
    )
    r.use("SN-GONE", "Ghost", remaining=1.0)
    # When the worker visits and DRS refuses the report of a slot it does not know
    r.clock.advance(3600)
    visit(r, "SN-GONE")
    # Then the visit read the subscription and the unknown slot is no longer subscribed
    assert [c["status"] for c in r.control.calls("slotStatus") if c["slotId"] == "Ghost"] == [404]
    assert len(r.successes("subscriptionInfo")) == 1
    assert not dependencies.repository().get_slot("SN-GONE", "Ghost").subscribed
