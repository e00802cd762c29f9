"""The daily demand estimation against moto DynamoDB: readings written by the usage path, the daily
visit's estimate and planned reorder point stored on the slot, and the hot path comparing with it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drs_core.adapters.estimate_store import EstimateStore, estimate_from_item, pack_history, unpack_history
from drs_core.adapters.items import Attr
from drs_core.adapters.state_repository import StateRepository
from drs_core.adapters.usage_store import UsageStore, state_from_item
from drs_core.domain import estimation
from drs_core.domain.models import Order, OrderState, Reading, ReadingKind, SlotOrder
from drs_core.services.estimation import demand_estimator, estimate_slot, order_fingerprint
from drs_core.services.reporting import default_upkeep
from tests.conftest import STATE_TABLE

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
VISIT_HOUR = 3
DAILY_USE = 5.0


@pytest.fixture(scope="module")
def repository(dynamodb: Any) -> StateRepository:
    return StateRepository(STATE_TABLE, dynamodb=dynamodb)


@pytest.fixture(scope="module")
def store(dynamodb: Any) -> EstimateStore:
    return EstimateStore(STATE_TABLE, dynamodb=dynamodb)


def new_slot(repository: StateRepository, serial: str) -> None:
    repository.upsert_subscription(serial, "Filter", subscribed=True, asin="B0FILTER", quantity=100, unit="L")


def live(
    store: UsageStore, repository: StateRepository, serial: str, days: int, *, start: float = 100.0
) -> float:
    """``days`` of use at ``DAILY_USE``, read four times a day, with the daily visit at ``VISIT_HOUR``."""
    level = start
    for day in range(days):
        for hour in (0, 6, 12, 18):
            at = DAY0 + timedelta(days=day, hours=hour)
            if hour == 6 and day > 0:
                slot = repository.get_slot(serial, "Filter", consistent=True)
                assert slot is not None
                estimate_slot(store, repository, slot, at - timedelta(hours=6 - VISIT_HOUR))
            store.apply(serial, "Filter", Reading("Filter", at, ReadingKind.REMAINING, level), at)
            level -= DAILY_USE / 4
    return level


def item(store: UsageStore, serial: str) -> dict:
    found = store.get_item(serial, "Filter")
    assert found is not None
    return found


def test_the_daily_visit_stores_a_planned_reorder_point_the_hot_path_compares_with(
    store: EstimateStore, repository: StateRepository
) -> None:
    # Given a slot used steadily for eight days and visited daily
    serial = "SN-PLAN"
    new_slot(repository, serial)
    live(store, repository, serial, 8)
    stored = item(store, serial)
    estimate = estimate_from_item(stored)
    state = state_from_item(stored)
    # Then the history holds a day of use per visit, and the plan is lead time of use plus safety
    assert len(estimate.history) >= 5
    assert estimate.history[-3:] == pytest.approx([DAILY_USE] * 3, rel=0.05)
    assert state.planned_reorder_point is not None
    prior_lead = state.policy.lead_time_days
    assert float(state.planned_reorder_point) > DAILY_USE * prior_lead
    assert float(state.planned_reorder_point) < 20.0 + DAILY_USE * (prior_lead + 2)  # below the fixed rule
    # And the hot path's stored point is the planned one, valid for the current version
    assert state.reorder_point == state.planned_reorder_point
    assert state.reorder_fields_valid


def test_a_reading_at_the_planned_point_raises_due_and_one_above_does_not(
    store: EstimateStore, repository: StateRepository
) -> None:
    serial = "SN-CROSS"
    new_slot(repository, serial)
    live(store, repository, serial, 8)
    point = float(state_from_item(item(store, serial)).reorder_point or 0)
    at = DAY0 + timedelta(days=8, hours=1)
    above = store.apply(serial, "Filter", Reading("Filter", at, ReadingKind.REMAINING, point + 1), at)
    assert above.fast and not above.due_raised
    later = at + timedelta(hours=1)
    crossing = store.apply(serial, "Filter", Reading("Filter", later, ReadingKind.REMAINING, point), later)
    assert crossing.due_raised
    assert item(store, serial)[Attr.REORDER_DUE] == {"BOOL": True}


def test_the_lead_time_is_learnt_from_the_orders_estimated_delivery_date(
    store: EstimateStore, repository: StateRepository
) -> None:
    # Given a measured slot with an order placed on day 8, DRS estimating delivery 2 days later
    serial = "SN-LEAD"
    new_slot(repository, serial)
    live(store, repository, serial, 8)
    before = state_from_item(item(store, serial)).planned_reorder_point
    placed = DAY0 + timedelta(days=8, hours=1)
    repository.put_order(
        Order(
            serial=serial, instance_id="order-1", slot_id="Filter", state=OrderState.PLACED, placed_at=placed
        )
    )
    repository.set_slot_order(
        serial,
        "Filter",
        expected_states={OrderState.NONE},
        new=SlotOrder(OrderState.PLACED, "order-1", estimated_delivery_date=placed + timedelta(days=2)),
    )
    # When the next daily visit runs
    slot = repository.get_slot(serial, "Filter", consistent=True)
    assert slot is not None
    estimate_slot(store, repository, slot, DAY0 + timedelta(days=9, hours=VISIT_HOUR))
    # Then the slot's lead time is DRS's estimate, and its plan is smaller than with the 7-day prior
    stored = item(store, serial)
    learnt = estimate_from_item(stored)
    assert learnt.lead_time_days == pytest.approx(2.0, abs=0.01)
    assert learnt.lead_time_order == order_fingerprint("order-1")
    after = state_from_item(stored).planned_reorder_point
    assert before is not None and after is not None and after < before


def test_a_visit_finding_the_slot_already_below_its_new_point_flags_it_for_an_order(
    store: EstimateStore, repository: StateRepository
) -> None:
    # Given a slot used steadily for eight days, well above its plan for the 7-day prior lead time
    serial = "SN-RISE"
    new_slot(repository, serial)
    live(store, repository, serial, 8)
    slot = repository.get_slot(serial, "Filter", consistent=True)
    assert slot is not None and slot.planned_reorder_point is not None
    assert slot.remaining_quantity > slot.planned_reorder_point
    assert not state_from_item(item(store, serial)).reorder_due
    # When the app sets a 14-day lead time and the next daily visit plans with it
    repository.update_policy(serial, "Filter", replace(slot.policy, lead_time_days=14.0))
    moved = repository.get_slot(serial, "Filter", consistent=True)
    assert moved is not None
    estimate_slot(store, repository, moved, DAY0 + timedelta(days=8, hours=VISIT_HOUR))
    # Then the slot is below its new point and flagged at once, without waiting for a reading
    state = state_from_item(item(store, serial))
    assert state.planned_reorder_point is not None
    assert float(state.planned_reorder_point) > slot.remaining_quantity
    assert state.reorder_due


def test_a_reading_between_the_visits_read_and_write_makes_it_try_again(
    store: EstimateStore, repository: StateRepository, dynamodb: Any
) -> None:
    serial = "SN-RACE"
    new_slot(repository, serial)
    live(store, repository, serial, 5)

    class Racing(EstimateStore):
        raced = False

        def get_item(self, serial: str, slot_id: str) -> dict | None:
            found = super().get_item(serial, slot_id)
            if not Racing.raced:
                Racing.raced = True
                at = DAY0 + timedelta(days=5, hours=2)
                store.apply(serial, "Filter", Reading("Filter", at, ReadingKind.REMAINING, 60.0), at)
            return found

    racing = Racing(STATE_TABLE, dynamodb=dynamodb)
    slot = repository.get_slot(serial, "Filter", consistent=True)
    assert slot is not None
    result = estimate_slot(racing, repository, slot, DAY0 + timedelta(days=5, hours=VISIT_HOUR))
    assert Racing.raced and result is not None
    stored = state_from_item(item(store, serial))
    # The reading the visit raced with is kept, and the estimate was written on top of it
    assert float(stored.remaining) == 60.0
    assert estimate_from_item(item(store, serial)).observed_at == DAY0 + timedelta(days=5, hours=2)


def test_the_worker_runs_the_estimation_in_its_default_upkeep(
    dynamodb: Any, repository: StateRepository
) -> None:
    upkeep = default_upkeep(repository, UsageStore(STATE_TABLE, dynamodb=dynamodb))
    assert upkeep.estimate_demand is not None
    serial = "SN-UPKEEP"
    new_slot(repository, serial)
    plain = UsageStore(STATE_TABLE, dynamodb=dynamodb)
    live(EstimateStore.sharing(plain), repository, serial, 5)
    slot = repository.get_slot(serial, "Filter", consistent=True)
    assert slot is not None
    updated = upkeep.estimate_demand(slot, DAY0 + timedelta(days=5, hours=VISIT_HOUR))
    assert updated is not None and updated.planned_reorder_point is not None
    assert demand_estimator(plain, repository) is not None
    assert len(estimate_from_item(item(plain, serial)).history) >= estimation.MIN_HISTORY_DAYS


def test_a_device_silent_since_its_stock_crossed_the_point_is_flagged_by_the_visit(
    store: EstimateStore, repository: StateRepository
) -> None:
    # Given a slot used steadily, last read above its reorder point
    serial = "SN-SILENT"
    new_slot(repository, serial)
    live(store, repository, serial, 8, start=88.0)
    slot = repository.get_slot(serial, "Filter", consistent=True)
    assert slot is not None and slot.planned_reorder_point is not None and slot.last_reading_at is not None
    above = slot.remaining_quantity - slot.planned_reorder_point
    assert above > 0 and not state_from_item(item(store, serial)).reorder_due
    # When the device goes silent for long enough to use that margin, and the daily visit comes
    silent_days = above / (slot.daily_consumption or 1.0) + 0.5
    assert 0.5 < silent_days < 3
    estimate_slot(store, repository, slot, slot.last_reading_at + timedelta(days=silent_days))
    # Then the visit flags the slot for an order without waiting for the device's next reading
    assert state_from_item(item(store, serial)).reorder_due


def test_the_history_is_stored_in_sixty_bytes_to_a_65535th_of_its_largest_day() -> None:
    history = tuple(float(day % 7) * 1.37 for day in range(estimation.HISTORY_DAYS))
    packed = pack_history(history)
    assert len(packed) == 4 + 2 * estimation.HISTORY_DAYS
    assert unpack_history(packed) == pytest.approx(history, abs=max(history) / 0xFFFF)
    assert unpack_history(pack_history((0.0, 0.0))) == (0.0, 0.0)
