"""What a usage reading does to a slot: pure functions of the slot's usage state, the reading and time.

These rules are the single definition of a reading's effect. The hot path (``adapters.usage_store``)
compiles the common case into one blind, conditional ``UpdateItem`` whose condition holds exactly when
``fast_path_holds`` does; when DynamoDB refuses it, the adapter has the item (``ALL_OLD``) and writes
``apply_reading``'s result guarded by the item's version. Either way the slot ends where
``apply_reading`` says (a property test checks the compiled form against this one).

Quantities are ``Decimal`` with DynamoDB's 38 digits, so Python and DynamoDB agree to the last digit.

The reorder decision on the hot path works with three stored quantities: the *reorder point* (stock at
or below which the slot needs an order, ``reorder_policy.reorder_point``), the *reorder level* (the
remaining quantity at which that happens: reorder point minus stock on hand) and the *headroom*
(remaining minus reorder level). A reading moves remaining and headroom together (SET/ADD), so
"crosses the reorder point" is a comparison a condition can make. The three are trusted only while
``reorderVersion`` equals the item's ``version``: every other writer of the slot bumps ``version``
alone, so after a policy, subscription, on-hand or order change the next reading recomputes them.

The consumption rate is re-estimated once a day per slot (``SNAPSHOT_PERIOD``): the consumption since
the day's snapshot (``snapshotRemaining + refilledSinceSnapshot - remaining``) is blended into the rate
(``forecast.update_daily_rate``) and the snapshot rolls forward. The hot path refuses the blind write
when the snapshot is due, so the roll happens in the exact write of that reading (one extra refused
write per slot per day).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Context, Decimal, localcontext

from drs_core.domain.forecast import update_daily_rate
from drs_core.domain.models import (
    Device,
    OrderState,
    Reading,
    ReadingKind,
    Slot,
    SlotOrder,
    SlotPolicy,
)
from drs_core.domain.order_lifecycle import on_refill
from drs_core.domain.reorder_policy import MAX_CANCELS_BEFORE_REFILL, in_cooldown, reorder_point

# DynamoDB numbers carry 38 significant digits; compute with as many so both sides agree exactly.
DYNAMODB_DECIMALS = Context(prec=38)
ZERO = Decimal(0)

# A claim (order REQUESTED) older than this was left by an invocation that died: the reorder function's
# timeout is far shorter, so no live invocation can still be working on it.
STALE_CLAIM_AFTER = timedelta(minutes=15)
# The consumption rate is re-estimated (and the snapshot rolled) at most this often per slot.
SNAPSHOT_PERIOD = timedelta(days=1)
# Shorter snapshot periods say too little about a daily rate to update it.
MIN_RATE_PERIOD = timedelta(hours=1)
# Rates below this are stored as zero (see ``_storable``).
MIN_DAILY_RATE = 1e-6
# A slot whose device cannot order (not linked, or DRS refused the slot) is not re-proposed for this
# long: bounds the reorder invocations such a slot can cause to two a day.
REORDER_HOLD = timedelta(hours=12)
# Readings observed further ahead of the server's clock than this are refused (docs/api.md: far future).
MAX_CLOCK_SKEW = timedelta(minutes=5)


def quantity(value: float) -> Decimal:
    """The exact decimal a reading's float becomes in DynamoDB (``items.num_av``'s formatting)."""
    return Decimal(repr(float(value)))


@dataclass(frozen=True, slots=True)
class UsageState:
    """What the usage path reads and writes of one slot item."""

    version: int = 0
    reorder_version: int | None = None
    remaining: Decimal = ZERO
    on_hand: Decimal = ZERO
    original: Decimal = ZERO
    reorder_point: Decimal | None = None
    reorder_level: Decimal | None = None  # remaining at or below which an order is due
    headroom: Decimal | None = None  # remaining - reorder level
    daily_consumption: float | None = None
    last_absolute_at: datetime | None = None  # observedAt of the newest absolute level or refill
    last_reading_at: datetime | None = None  # server time of the last reading applied
    last_use_at: datetime | None = None
    snapshot_remaining: Decimal | None = None
    snapshot_at: datetime | None = None
    refilled_since_snapshot: Decimal = ZERO
    subscribed: bool = False
    policy: SlotPolicy = field(default_factory=SlotPolicy)
    order: SlotOrder = field(default_factory=SlotOrder)
    order_requested_at: datetime | None = None
    reorder_due: bool = False
    # A refill showed a package was used up: DRS gets a slotStatus at once (schema.SLOT_REPORT_DUE_ATTR).
    slot_report_due: bool = False
    reorder_held_until: datetime | None = None
    # Use counted by the snapshot rolls since the slot was first measured (the daily estimation's input).
    consumed_total: Decimal = ZERO
    # The daily plan's reorder point (``estimation.plan``, set by the daily visit); None: the fixed rule.
    planned_reorder_point: Decimal | None = None

    @property
    def reorder_fields_valid(self) -> bool:
        """True when reorder point, level and headroom were computed for this very version."""
        return (
            self.reorder_version == self.version
            and self.reorder_point is not None
            and self.reorder_level is not None
            and self.headroom is not None
        )


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one reading: the new state, or the old one when the reading was stale."""

    state: UsageState
    applied: bool
    due_raised: bool = False


# --- the reorder side ------------------------------------------------------------------------------


def claim_is_stale(state: UsageState, now: datetime) -> bool:
    """An order claim (REQUESTED) that no live reorder invocation can still hold."""
    if state.order.state is not OrderState.REQUESTED:
        return False
    return state.order_requested_at is None or state.order_requested_at <= now - STALE_CLAIM_AFTER


def may_raise_due(state: UsageState, now: datetime) -> bool:
    """Whether a slot below its reorder point should be proposed for an order now.

    The reasons the slot alone can tell (device status needs the device item: the reorder function
    checks it). A stale claim counts as no claim, so a crashed invocation's slot is proposed again.
    """
    order = state.order
    if not state.subscribed or not state.policy.auto_reorder:
        return False
    if order.state in (OrderState.PLACED, OrderState.SHIPPED):
        return False
    if order.state is OrderState.REQUESTED and not claim_is_stale(state, now):
        return False
    if order.cancels_since_refill >= MAX_CANCELS_BEFORE_REFILL:
        return False
    if in_cooldown(order, now):
        return False
    return not (state.reorder_held_until is not None and now < state.reorder_held_until)


def reorder_fields(
    *,
    original: Decimal,
    on_hand: Decimal,
    remaining: Decimal,
    policy: SlotPolicy,
    rate: float | None,
    planned: Decimal | None = None,
) -> tuple[Decimal, Decimal, Decimal]:
    """(reorder point, reorder level, headroom) computed from scratch."""
    point = quantity(
        reorder_point(float(original), policy, rate, float(planned) if planned is not None else None)
    )
    with localcontext(DYNAMODB_DECIMALS):
        level = point - on_hand
        return point, level, remaining - level


def with_reorder_fields(state: UsageState, now: datetime) -> UsageState:
    """``state`` with its reorder fields recomputed and the due flag raised if it is now due."""
    point, level, headroom = reorder_fields(
        original=state.original,
        on_hand=state.on_hand,
        remaining=state.remaining,
        policy=state.policy,
        rate=state.daily_consumption,
        planned=state.planned_reorder_point,
    )
    updated = replace(state, reorder_point=point, reorder_level=level, headroom=headroom)
    return _raise_due_if_needed(updated, now) if state.last_reading_at is not None else updated


def _raise_due_if_needed(state: UsageState, now: datetime) -> UsageState:
    assert state.headroom is not None
    if not state.reorder_due and state.headroom <= 0 and may_raise_due(state, now):
        return replace(state, reorder_due=True)
    return state


# --- the consumption snapshot ----------------------------------------------------------------------


def snapshot_due(state: UsageState, now: datetime) -> bool:
    """True when the day's snapshot should roll (the rate be re-estimated) before the next change."""
    return state.snapshot_at is not None and state.snapshot_at <= now - SNAPSHOT_PERIOD


def roll_snapshot(state: UsageState) -> UsageState:
    """Blend the consumption since the snapshot into the rate and start a new snapshot.

    The period ends at the last reading applied (what is known), not now. For devices that report
    absolute levels the hot path cannot tell which reading drew on the slot, so a period in which the
    level fell sets the last use to the newest absolute reading of that period (at most a day late).
    """
    end = state.last_reading_at
    if state.snapshot_at is None or state.snapshot_remaining is None or end is None:
        return state
    consumed = consumed_since_snapshot(state)
    with localcontext(DYNAMODB_DECIMALS):
        consumed_total = state.consumed_total + max(consumed, ZERO)
    elapsed = (end - state.snapshot_at).total_seconds()
    rate = state.daily_consumption
    if elapsed >= MIN_RATE_PERIOD.total_seconds():
        rate = _storable(update_daily_rate(rate, float(consumed), elapsed))
    last_use = state.last_use_at
    absolute = state.last_absolute_at
    if consumed > 0 and absolute is not None and absolute > state.snapshot_at:
        last_use = absolute if last_use is None else max(last_use, absolute)
    return replace(
        state,
        daily_consumption=rate,
        consumed_total=consumed_total,
        last_use_at=last_use,
        snapshot_remaining=state.remaining,
        snapshot_at=max(end, state.snapshot_at),
        refilled_since_snapshot=ZERO,
    )


def consumed_since_snapshot(state: UsageState) -> Decimal:
    """Use since the day's snapshot (negative when stock rose without a refill reading)."""
    if state.snapshot_remaining is None:
        return ZERO
    with localcontext(DYNAMODB_DECIMALS):
        return state.snapshot_remaining + state.refilled_since_snapshot - state.remaining


def _storable(rate: float | None) -> float | None:
    """A rate DynamoDB can store: a long idle period decays it towards zero, below DynamoDB's smallest
    number (1e-130); anything under a millionth of a unit a day is no consumption at all."""
    if rate is None:
        return None
    return 0.0 if rate < MIN_DAILY_RATE else rate


def refresh(state: UsageState, now: datetime) -> UsageState:
    """Off the hot path: roll the snapshot if due, recompute the reorder fields, raise due if due.

    The result carries the next version (the caller writes it guarded by the current one).
    """
    rolled = roll_snapshot(state) if snapshot_due(state, now) else state
    return with_reorder_fields(
        replace(rolled, version=state.version + 1, reorder_version=state.version + 1), now
    )


# --- readings --------------------------------------------------------------------------------------


def is_stale(state: UsageState, reading: Reading) -> bool:
    """A reading observed before the newest absolute level or refill: that level already includes it
    (or the refill replaced what it describes)."""
    return state.last_absolute_at is not None and reading.observed_at < state.last_absolute_at


def fast_path_holds(state: UsageState, reading: Reading, now: datetime) -> bool:
    """When the hot path's blind write is exact: the condition ``usage_store`` compiles, in Python."""
    if not state.reorder_fields_valid or is_stale(state, reading) or state.snapshot_at is None:
        return False
    if snapshot_due(state, now):
        return False
    if reading.original_quantity is not None and state.original != quantity(reading.original_quantity):
        return False
    amount = quantity(reading.quantity)
    assert state.headroom is not None and state.reorder_level is not None
    after = state
    with localcontext(DYNAMODB_DECIMALS):
        match reading.kind:
            case ReadingKind.REMAINING:
                if state.remaining < amount:
                    return False
                crossing = state.reorder_level >= amount
            case ReadingKind.CONSUMED:
                if state.remaining < amount:
                    return False
                if state.last_use_at is not None and state.last_use_at > reading.observed_at:
                    return False
                crossing = state.headroom <= amount
            case ReadingKind.REFILLED:
                if state.on_hand != 0 or state.order.state in (OrderState.PLACED, OrderState.SHIPPED):
                    return False
                crossing = state.headroom <= -amount
                after = replace(state, order=replace(state.order, cancels_since_refill=0))
    return not crossing or state.reorder_due or not may_raise_due(after, now)


def apply_reading(state: UsageState, reading: Reading, now: datetime) -> Applied:
    """The slot after ``reading`` (received at ``now``); stale readings change nothing.

    - remaining: sets the level (a rise counts as stock added, for the rate); the newest absolute
      level's time guards against older readings arriving late;
    - consumed: subtracts, never below zero; the last use becomes the reading's time;
    - refilled: adds, takes the loaded stock off what was on hand, delivers a shipped order and resets
      the cancel count (``order_lifecycle.on_refill``); older levels are stale from then on; the slot
      is flagged for a prompt ``slotStatus`` (a package was used up);
    - ``originalQuantity``: the slot's full quantity from now on.
    """
    if is_stale(state, reading):
        return Applied(state, applied=False)
    base = roll_snapshot(state) if snapshot_due(state, now) else state
    rolled = base is not state
    amount = quantity(reading.quantity)
    remaining, on_hand, refilled = base.remaining, base.on_hand, base.refilled_since_snapshot
    last_use, last_absolute, order = base.last_use_at, base.last_absolute_at, base.order
    slot_report_due = base.slot_report_due
    with localcontext(DYNAMODB_DECIMALS):
        match reading.kind:
            case ReadingKind.REMAINING:
                if amount > remaining:
                    refilled += amount - remaining
                remaining, last_absolute = amount, reading.observed_at
            case ReadingKind.CONSUMED:
                remaining = max(ZERO, remaining - amount)
                last_use = reading.observed_at if last_use is None else max(last_use, reading.observed_at)
            case ReadingKind.REFILLED:
                remaining += amount
                refilled += amount
                on_hand -= min(on_hand, amount)
                order = on_refill(order, reading.observed_at)
                # A level observed before the refill describes the slot before it: stale from now on.
                last_absolute = reading.observed_at
                # The package it replaces was used up: DRS wants a slotStatus now, not at the daily visit.
                slot_report_due = True
    original = base.original if reading.original_quantity is None else quantity(reading.original_quantity)
    changed = replace(
        base,
        version=state.version + 1,
        reorder_version=state.version + 1,
        remaining=remaining,
        on_hand=on_hand,
        original=original,
        refilled_since_snapshot=refilled,
        last_use_at=last_use,
        last_absolute_at=last_absolute,
        last_reading_at=now,
        order=order,
        slot_report_due=slot_report_due,
    )
    keeps_basis = (
        state.reorder_fields_valid and not rolled and original == state.original and on_hand == state.on_hand
    )
    if keeps_basis:
        assert state.reorder_level is not None
        with localcontext(DYNAMODB_DECIMALS):
            changed = replace(changed, headroom=remaining - state.reorder_level)
    else:
        point, level, headroom = reorder_fields(
            original=original,
            on_hand=on_hand,
            remaining=remaining,
            policy=changed.policy,
            rate=changed.daily_consumption,
            planned=changed.planned_reorder_point,
        )
        changed = replace(changed, reorder_point=point, reorder_level=level, headroom=headroom)
    if changed.snapshot_at is None:
        # The first reading measures the slot: the rate is counted from here.
        changed = replace(
            changed, snapshot_remaining=remaining, snapshot_at=now, refilled_since_snapshot=ZERO
        )
    raised = _raise_due_if_needed(changed, now)
    return Applied(raised, applied=True, due_raised=raised.reorder_due and not changed.reorder_due)


def reading_problem(reading: Reading, now: datetime) -> str | None:
    """Why a well-formed reading is still refused (None: acceptable). Shapes are the API model's job."""
    if reading.observed_at > now + MAX_CLOCK_SKEW:
        return f"observedAt is more than {int(MAX_CLOCK_SKEW.total_seconds() // 60)} minutes in the future"
    return None


def last_active_at(device: Device, slots: Sequence[Slot]) -> datetime | None:
    """A device's last activity: its newest reading on any slot (readings never write the device item),
    else what the device item recorded."""
    seen = [slot.last_reading_at for slot in slots if slot.last_reading_at is not None]
    if device.last_active_at is not None:
        seen.append(device.last_active_at)
    return max(seen) if seen else None
