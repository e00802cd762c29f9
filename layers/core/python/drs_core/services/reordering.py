"""The reorder decision: a slot was flagged ``reorderDue``; order it through DRS exactly once per need.

One stream record in, at most one DRS order out, whatever the duplicates, retries and concurrency:

1. Read the slot and its device (consistent; this path runs once per need, not per reading). The
   record only says "look at this slot": the current item decides.
2. Device not linked → hold the slot (``REORDER_HOLD``) and clear the flag. Policy says no (stock back
   above the point, order open, cooldown, not subscribed...) → clear the flag.
3. Claim the slot with a conditional write (``claim_for_order``: order NONE/CANCELLED, subscribed, no
   cooldown, fewer than two cancels, auto-reorder on). Only one invocation wins; the others stop. A
   claim left by an invocation that died (REQUESTED for longer than ``STALE_CLAIM_AFTER``) is taken
   over by a write fenced on its claim time.
4. ``replenish`` with the device's token (``call_drs``). ``STANDARD_ORDER_PLACED`` /
   ``TEST_ORDER_PLACED`` record the order (slot ``PLACED`` with the instance id, and its history item);
   ``ORDER_INPROGRESS`` adopts the open order and never places another: an order we know (even one
   whose delivery was inferred) is re-opened with its state and dates (``order_truth``), one we do
   not know is recorded PLACED and checked with DRS on the next daily visit.
5. Failures give the claim back: retryable ones (DRS/LWA unavailable) are raised so the event source
   mapping retries the record (bounded, bisecting, then its DLQ); DRS refusing the slot or the device
   needing re-authorisation holds the slot instead, so a storm of retries cannot follow.

DRS itself keeps at most one open order per slot and answers ``ORDER_INPROGRESS`` to any further
replenish, so even a call whose answer was lost (a timeout after DRS placed the order) is adopted on
the retry rather than doubled.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from aws_lambda_powertools.metrics import MetricUnit

from drs_core.adapters.drs_client import DETAIL_TEST_ORDER_PLACED, DrsClient, ReplenishResult
from drs_core.adapters.items import slot_from_item
from drs_core.adapters.state_repository import StateRepository
from drs_core.adapters.token_vault import TokenVault
from drs_core.adapters.usage_store import UsageStore, state_from_item
from drs_core.domain import order_lifecycle, usage
from drs_core.domain.models import DeviceStatus, Order, OrderState, Slot
from drs_core.domain.reorder_policy import decide
from drs_core.errors import (
    DrsBadRequest,
    DrsNotFound,
    ReauthRequired,
    TokensMissing,
)
from drs_core.observability import logger, metrics
from drs_core.services.drs_calls import call_drs
from drs_core.services.order_truth import (
    in_progress_order,
    notification_store,
    reopen_order,
    resync_subscription,
)


class ReorderOutcome(StrEnum):
    PLACED = "PLACED"  # DRS placed an order (standard or test)
    ADOPTED = "ADOPTED"  # DRS already had an open order for the slot: recorded, nothing placed
    NOT_NEEDED = "NOT_NEEDED"  # the policy says no (any more): flag cleared
    CLAIMED_ELSEWHERE = "CLAIMED_ELSEWHERE"  # another invocation holds (or took) the claim
    HELD = "HELD"  # the device cannot order now: slot held, flag cleared
    REAUTH_REQUIRED = "REAUTH_REQUIRED"  # the customer must link the device again: slot held
    REFUSED_BY_DRS = "REFUSED_BY_DRS"  # DRS refused this slot's replenish: slot held
    NO_SLOT = "NO_SLOT"


def reorder_slot(
    serial: str,
    slot_id: str,
    *,
    repository: StateRepository,
    store: UsageStore,
    vault: TokenVault,
    drs: DrsClient,
    now: datetime,
) -> ReorderOutcome:
    """Decide on one flagged slot and, if an order is needed, place it exactly once."""
    item = store.get_item(serial, slot_id)
    if item is None:
        return _done(ReorderOutcome.NO_SLOT)
    state, slot = state_from_item(item), slot_from_item(item)
    device = repository.get_device(serial, consistent=True)
    status = device.status if device is not None else DeviceStatus.DEREGISTERED
    if status is not DeviceStatus.LINKED:
        store.clear_due(serial, slot_id, state, hold_until=now + usage.REORDER_HOLD)
        logger.info("reorder held: device not linked", extra={"deviceStatus": status.value})
        return _done(ReorderOutcome.HELD)

    stale_claim = usage.claim_is_stale(state, now)
    # A claim nobody can still be working on counts as no claim: the slot is judged on its stock.
    judged = slot.with_order(state=OrderState.NONE) if stale_claim else slot
    decision = decide(status, judged, now)
    if not decision.reorder:
        if state.reorder_due:
            store.clear_due(serial, slot_id, state)
        logger.info("no reorder", extra={"verdict": decision.verdict.value})
        return _done(ReorderOutcome.NOT_NEEDED)

    if stale_claim:
        logger.warning(
            "taking over a stale order claim", extra={"requestedAt": str(state.order_requested_at)}
        )
        claimed = store.take_over_claim(serial, slot_id, state.order_requested_at, now)
    else:
        claimed = repository.claim_for_order(serial, slot_id, now)
    if claimed is None:
        return _done(ReorderOutcome.CLAIMED_ELSEWHERE)
    return _replenish(claimed, repository=repository, store=store, vault=vault, drs=drs, now=now)


def _replenish(
    claimed: Slot,
    *,
    repository: StateRepository,
    store: UsageStore,
    vault: TokenVault,
    drs: DrsClient,
    now: datetime,
) -> ReorderOutcome:
    serial, slot_id = claimed.serial, claimed.slot_id
    try:
        result = call_drs(
            serial, lambda token: drs.replenish(token, slot_id), vault=vault, repository=repository
        )
    except ReauthRequired:
        # call_drs has marked the device REAUTH_REQUIRED; a retry could only fail the same way.
        _give_back(claimed, repository, store, hold_until=now + usage.REORDER_HOLD)
        logger.warning("replenish impossible: device needs re-authorisation")
        return _done(ReorderOutcome.REAUTH_REQUIRED)
    except (DrsBadRequest, DrsNotFound, TokensMissing) as refused:
        _give_back(claimed, repository, store, hold_until=now + usage.REORDER_HOLD)
        logger.error("DRS refused the replenish", extra={"errorType": type(refused).__name__})
        if not isinstance(refused, TokensMissing):
            # An unknown or unsubscribed slot: our view of the subscription may be stale (a lost
            # SubscriptionChanged). DRS is the truth: read it now.
            _resync_subscription(serial, repository=repository, vault=vault, drs=drs, now=now)
        return _done(ReorderOutcome.REFUSED_BY_DRS)
    except BaseException:
        # Retryable (DRS/LWA unavailable) or unexpected: free the slot, let the mapping retry the record.
        _give_back(claimed, repository, store, hold_until=None)
        metrics.add_metric(name="ReplenishRetried", unit=MetricUnit.Count, value=1)
        raise
    return _record(claimed, result, repository=repository, store=store, now=now)


def _record(
    claimed: Slot, result: ReplenishResult, *, repository: StateRepository, store: UsageStore, now: datetime
) -> ReorderOutcome:
    serial, slot_id, instance_id = claimed.serial, claimed.slot_id, result.event_instance_id
    logger.append_keys(instanceId=instance_id)
    if not result.order_placed and instance_id:
        # DRS is the truth: the slot's open order is this one. Known to us → its state and dates back.
        known = reopen_order(repository, serial, instance_id)
        new_order = in_progress_order(claimed.order, instance_id, known, now)
        logger.info("ORDER_INPROGRESS names an open order", extra={"known": known is not None})
    else:
        change = order_lifecycle.Change(order_lifecycle.OrderEvent.PLACE, now, instance_id=instance_id)
        new_order = order_lifecycle.apply(claimed.order, change)
    if (
        repository.set_slot_order(serial, slot_id, expected_states={OrderState.REQUESTED}, new=new_order)
        is None
    ):
        # A notification about this order got there first: the slot has moved on already.
        logger.info("slot order already moved on when replenish answered")
    if not result.order_placed:
        logger.info("DRS has an open order for the slot: adopted", extra={"detailCode": result.detail_code})
        return _done(ReorderOutcome.ADOPTED)
    if instance_id:
        store.record_placed_order(
            Order(
                serial=serial,
                instance_id=instance_id,
                slot_id=slot_id,
                state=OrderState.PLACED,
                is_test=result.detail_code == DETAIL_TEST_ORDER_PLACED,
                asin=claimed.asin,
                unit=claimed.unit,
                placed_at=now,
            )
        )
    logger.info("order placed", extra={"detailCode": result.detail_code})
    return _done(ReorderOutcome.PLACED)


def _resync_subscription(
    serial: str, *, repository: StateRepository, vault: TokenVault, drs: DrsClient, now: datetime
) -> None:
    """Re-read the device's subscription from DRS and apply it; trouble is logged, never raised."""
    try:
        info = call_drs(
            serial, lambda token: drs.subscription_info(token, version=2), vault=vault, repository=repository
        )
        found = repository.get_device_with_slots(serial, consistent=True)
        device, slots = found if found is not None else (None, [])
        resync_subscription(
            serial,
            slots,
            info,
            store=notification_store(repository),
            now=now,
            model_id=device.model_id if device is not None else None,
        )
    except Exception:
        logger.exception("could not re-read the subscription after a refused replenish")


def _give_back(
    claimed: Slot, repository: StateRepository, store: UsageStore, *, hold_until: datetime | None
) -> None:
    """Release the claim; with ``hold_until``, also keep the slot from being proposed again soon.

    Runs while another failure is being handled: its own trouble is logged, never raised over it.
    """
    try:
        released = repository.release_claim(claimed.serial, claimed.slot_id)
        if hold_until is not None and released is not None:
            store.hold(claimed.serial, claimed.slot_id, hold_until)
    except Exception:
        logger.exception("could not give the order claim back; it goes stale and is taken over")


def _done(outcome: ReorderOutcome) -> ReorderOutcome:
    metrics.add_metric(
        name=f"Reorder{outcome.value.title().replace('_', '')}", unit=MetricUnit.Count, value=1
    )
    return outcome
