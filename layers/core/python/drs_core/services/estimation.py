"""The daily demand estimation of a slot (``domain.estimation``), run by the report worker's visit.

Once a day per slot, off the hot path: one consistent read of the slot item, at most one order read
(when the slot has an order whose lead time was not learnt yet), and one write guarded by the item's
version. The visit

1. learns the lead time of the slot's current order from DRS's estimated delivery date and the time
   the order was placed (its history item);
2. appends the use since its last visit to the daily history (the use the snapshot rolls counted plus
   the use since the current snapshot);
3. plans the reorder point (level, weekly pattern, variability, learnt lead time) and stores it, with
   the reorder fields recomputed from it (``usage.refresh``: the snapshot rolls if due, and the slot is
   flagged ``reorderDue`` if it is already at or below the new point, or if the stock expected now is:
   ``reorder_policy.expected_stock`` projects the use of a device silent for up to three days).

The hot path keeps comparing readings with the stored reorder level: the plan is just a better number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from drs_core.adapters.estimate_store import EstimateStore, estimate_from_item
from drs_core.adapters.items import Refused, slot_from_item
from drs_core.adapters.state_repository import StateRepository
from drs_core.adapters.usage_store import UsageStore, state_from_item
from drs_core.domain import estimation, usage
from drs_core.domain.models import OrderState, Slot
from drs_core.domain.reorder_policy import expected_stock
from drs_core.errors import SlotBusy

# Slot versions the visit tries before giving up for the day (readings keep moving it).
MAX_ROUNDS = 4
LEARNABLE_ORDER_STATES = frozenset({OrderState.PLACED, OrderState.SHIPPED})


def estimate_slot(
    store: EstimateStore, repository: StateRepository, slot: Slot, now: datetime
) -> Slot | None:
    """The slot after its daily estimation (None if it no longer exists)."""
    for _ in range(MAX_ROUNDS):
        item = store.get_item(slot.serial, slot.slot_id)
        if item is None:
            return None
        state = state_from_item(item)
        current = slot_from_item(item)
        estimate = _learn_lead_time(estimate_from_item(item), current, repository)
        estimate = estimation.observe_use(
            estimate,
            consumed_total=float(state.consumed_total + usage.consumed_since_snapshot(state)),
            last_reading_at=state.last_reading_at,
        )
        planned = estimation.plan(
            estimate,
            now=now,
            prior_lead_time_days=state.policy.lead_time_days,
            package_quantity=float(state.original),
        )
        point = usage.quantity(planned.reorder_point) if planned is not None else None
        refreshed = usage.refresh(replace(state, planned_reorder_point=point), now)
        new = _flag_if_silent_and_due(refreshed, current, now)
        written = store.write_estimate(slot.serial, slot.slot_id, item, state, new, estimate)
        if written is None:
            return current
        if not isinstance(written, Refused):
            return slot_from_item(written)
    raise SlotBusy(f"slot {slot.slot_id} kept changing during its daily estimation")


def _flag_if_silent_and_due(new: usage.UsageState, slot: Slot, now: datetime) -> usage.UsageState:
    """``new`` flagged ``reorderDue`` when the stock expected now (the device has been silent: offline,
    or its next upload not in yet) is at or below the new reorder point: the hot path would only see
    the crossing at the device's next reading."""
    if new.reorder_due or new.reorder_point is None or not usage.may_raise_due(new, now):
        return new
    projected = expected_stock(replace(slot, daily_consumption=new.daily_consumption), now)
    return replace(new, reorder_due=True) if projected <= float(new.reorder_point) else new


def order_fingerprint(instance_id: str) -> str:
    """A short stand-in for an order id on the slot item (which order the lead time was learnt from)."""
    return hashlib.sha256(instance_id.encode()).hexdigest()[:12]


def _learn_lead_time(
    estimate: estimation.DemandEstimate, slot: Slot, repository: StateRepository
) -> estimation.DemandEstimate:
    order = slot.order
    if (
        order.state not in LEARNABLE_ORDER_STATES
        or order.instance_id is None
        or order.estimated_delivery_date is None
        or order_fingerprint(order.instance_id) == estimate.lead_time_order
    ):
        return estimate
    history = repository.get_order(slot.serial, order.instance_id)
    if history is None or history.placed_at is None or history.is_test:
        return estimate
    return estimation.learn_lead_time(
        estimate,
        order_id=order_fingerprint(order.instance_id),
        placed_at=history.placed_at,
        estimated_delivery=order.estimated_delivery_date,
    )


def demand_estimator(
    usage_store: UsageStore, repository: StateRepository
) -> Callable[[Slot, datetime], Slot | None]:
    """``estimate_slot`` bound to its stores (on ``usage_store``'s table and client): the report
    worker's ``SlotUpkeep.estimate_demand``."""
    store = usage_store if isinstance(usage_store, EstimateStore) else EstimateStore.sharing(usage_store)

    def estimate(slot: Slot, now: datetime) -> Slot | None:
        return estimate_slot(store, repository, slot, now)

    return estimate
