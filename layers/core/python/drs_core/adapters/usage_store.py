"""The usage path's writes to slot items: one conditional ``UpdateItem`` per reading, no read.

**Hot path.** ``try_fast`` sends a reading as a blind update (SET/ADD on remaining, headroom and reading
times) under a condition that holds exactly when ``domain.usage.fast_path_holds`` does: the slot's
reorder fields are current (``reorderVersion = version``), the reading is not older than the newest
absolute level, the day's snapshot is not due, and either the reading does not cross the reorder point
or no order may be proposed (already due, order open, cooldown, hold, not subscribed...). The item
before the write comes back either way (``ReturnValues`` / ``ReturnValuesOnConditionCheckFailure`` =
``ALL_OLD``), so the new item is ``domain.usage.apply_reading`` of it, computed here without a read.

**Exact path.** When DynamoDB refuses the blind write, the refusal carries the item: the reading is
applied in Python (``apply_reading``: crossing → ``reorderDue = true``, refill of a shipped order,
the daily snapshot roll, unknown reorder fields) and written whole, guarded by the item's ``version``.
That costs one more write per need, per day (the snapshot roll) and after another writer's change.

**Reorder side.** The reorder function's own guarded writes on a slot: clearing a due flag it decides
not to act on (optionally holding the slot), taking over a stale claim, and the order's history item.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from botocore.exceptions import ClientError

from drs_core import schema
from drs_core.adapters.items import (
    Attr,
    AttributeValue,
    Item,
    Refused,
    TableGateway,
    UpdateBuilder,
    get_bool,
    get_float,
    get_int,
    get_time,
    key_item,
    num_av,
    opt_num_av,
    order_attributes,
    present,
    slot_from_item,
    slot_order_attributes,
    str_av,
    time_av,
)
from drs_core.clock import to_iso
from drs_core.domain import usage
from drs_core.domain.models import (
    Order,
    OrderState,
    Reading,
    ReadingKind,
    Slot,
    SlotOrder,
)
from drs_core.domain.reorder_policy import MAX_CANCELS_BEFORE_REFILL
from drs_core.errors import CredentialRevoked, SlotBusy, UnknownSlot
from drs_core.observability import logger

# Exact writes retried this often when other writers keep moving the slot's version.
MAX_ROUNDS = 4


def decimal_av(value: Decimal) -> AttributeValue:
    """A DynamoDB number from a ``Decimal``, in plain notation."""
    if not value.is_finite():
        raise ValueError("DynamoDB numbers must be finite")
    return {"N": format(value, "f")}


def opt_decimal_av(value: Decimal | None) -> AttributeValue | None:
    return decimal_av(value) if value is not None else None


def _decimal(item: Item, name: str) -> Decimal | None:
    return Decimal(item[name]["N"]) if name in item else None


def state_from_item(item: Item) -> usage.UsageState:
    """The usage state of a slot item (absent counters read as zero, absent fields as None)."""
    slot = slot_from_item(item)
    reorder_version = get_int(item, Attr.REORDER_VERSION, -1)
    return usage.UsageState(
        version=get_int(item, Attr.VERSION, 0),
        reorder_version=None if reorder_version < 0 else reorder_version,
        remaining=_decimal(item, Attr.REMAINING_QTY) or usage.ZERO,
        on_hand=_decimal(item, Attr.ON_HAND_QTY) or usage.ZERO,
        original=_decimal(item, Attr.ORIGINAL_QTY) or usage.ZERO,
        reorder_point=_decimal(item, Attr.REORDER_POINT),
        reorder_level=_decimal(item, Attr.REORDER_LEVEL),
        headroom=_decimal(item, Attr.HEADROOM),
        daily_consumption=get_float(item, Attr.DAILY_CONSUMPTION),
        last_absolute_at=get_time(item, Attr.LAST_ABSOLUTE),
        last_reading_at=get_time(item, Attr.LAST_READING),
        last_use_at=get_time(item, Attr.LAST_USE),
        snapshot_remaining=_decimal(item, Attr.SNAPSHOT_REMAINING),
        snapshot_at=get_time(item, Attr.SNAPSHOT_AT),
        refilled_since_snapshot=_decimal(item, Attr.REFILLED_SINCE_SNAPSHOT) or usage.ZERO,
        subscribed=slot.subscribed,
        policy=slot.policy,
        order=slot.order,
        order_requested_at=get_time(item, Attr.ORDER_REQUESTED_AT),
        reorder_due=get_bool(item, Attr.REORDER_DUE, False),
        slot_report_due=get_bool(item, Attr.SLOT_REPORT_DUE, False),
        reorder_held_until=get_time(item, Attr.REORDER_HELD_UNTIL),
        consumed_total=_decimal(item, Attr.CONSUMED_TOTAL) or usage.ZERO,
        planned_reorder_point=_decimal(item, Attr.PLANNED_REORDER_POINT),
    )


def usage_attributes(state: usage.UsageState) -> dict[str, AttributeValue | None]:
    """Every attribute the usage path owns, from ``state`` (None: absent)."""
    return {
        Attr.VERSION: num_av(state.version),
        Attr.REORDER_VERSION: opt_num_av(state.reorder_version),
        Attr.REMAINING_QTY: decimal_av(state.remaining),
        Attr.ON_HAND_QTY: decimal_av(state.on_hand),
        Attr.ORIGINAL_QTY: decimal_av(state.original),
        Attr.REORDER_POINT: opt_decimal_av(state.reorder_point),
        Attr.REORDER_LEVEL: opt_decimal_av(state.reorder_level),
        Attr.HEADROOM: opt_decimal_av(state.headroom),
        Attr.DAILY_CONSUMPTION: opt_num_av(state.daily_consumption),
        Attr.LAST_ABSOLUTE: time_av(state.last_absolute_at),
        Attr.LAST_READING: time_av(state.last_reading_at),
        Attr.LAST_USE: time_av(state.last_use_at),
        Attr.SNAPSHOT_REMAINING: opt_decimal_av(state.snapshot_remaining),
        Attr.SNAPSHOT_AT: time_av(state.snapshot_at),
        Attr.REFILLED_SINCE_SNAPSHOT: decimal_av(state.refilled_since_snapshot),
        Attr.REORDER_DUE: {"BOOL": state.reorder_due},
        # Present only while due, so the stream filter and a sparse item agree.
        Attr.SLOT_REPORT_DUE: {"BOOL": True} if state.slot_report_due else None,
        Attr.REORDER_HELD_UNTIL: time_av(state.reorder_held_until),
        Attr.CONSUMED_TOTAL: decimal_av(state.consumed_total) if state.consumed_total else None,
        Attr.PLANNED_REORDER_POINT: opt_decimal_av(state.planned_reorder_point),
    }


def changed_attributes(old: usage.UsageState, new: usage.UsageState) -> dict[str, AttributeValue | None]:
    """What a write must SET (value) or REMOVE (None) to turn ``old``'s item into ``new``'s."""
    before, after = usage_attributes(old), usage_attributes(new)
    changes = {name: value for name, value in after.items() if value != before[name]}
    if new.order != old.order:
        changes.update(slot_order_attributes(new.order))
    return changes


def merged(item: Item, changes: dict[str, AttributeValue | None]) -> Item:
    """``item`` with ``changes`` applied (what DynamoDB holds after the write)."""
    result = dict(item)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


class _Update(UpdateBuilder):
    """``UpdateBuilder`` plus SET of an arithmetic expression (``a = b - :c``)."""

    def set_expression(self, attribute: str, expression: str) -> None:
        self._set.append(f"{self.name(attribute)} = {expression}")


@dataclass(frozen=True)
class FastAttempt:
    """The blind write's outcome: ``accepted``, and the item as it was before (None: no such slot)."""

    accepted: bool
    item: Item | None


@dataclass(frozen=True)
class ReadingResult:
    """One reading applied (or found stale): the slot item before and after, and how it went."""

    before: Item
    after: Item
    applied: bool
    fast: bool
    due_raised: bool = False


class UsageStore(TableGateway):
    """Slot writes of the usage path (hot and exact) and of the reorder decision."""

    # --- hot path --------------------------------------------------------------------------------

    def try_fast(
        self, serial: str, slot_id: str, reading: Reading, now: datetime, *, link_id: str | None = None
    ) -> FastAttempt:
        """The one blind conditional write; the item before it comes back whether accepted or not.

        With ``link_id`` the write also requires the slot to belong to that link (``Attr.LINK_ID``):
        a credential of an ended link is refused by this same write, with no read.
        """
        update, condition = fast_write(reading, now)
        if link_id is not None:
            condition = f"{update.name(Attr.LINK_ID)} = {update.value(str_av(link_id))} AND {condition}"
        try:
            answer = self._dynamodb.update_item(
                TableName=self._table_name,
                Key=key_item(schema.slot_key(serial, slot_id)),
                ConditionExpression=condition,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **update.kwargs(),
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return FastAttempt(False, err.response.get("Item"))
        return FastAttempt(True, answer.get("Attributes", {}))

    def apply(
        self,
        serial: str,
        slot_id: str,
        reading: Reading,
        now: datetime,
        *,
        first: FastAttempt | None = None,
        link_id: str | None = None,
    ) -> ReadingResult:
        """Apply one reading: the blind write, then (if refused) the exact one; ``first`` is a blind
        attempt already made. Raises ``UnknownSlot`` for a missing slot, ``CredentialRevoked`` when the
        slot is not of link ``link_id`` (if given), ``SlotBusy`` if the slot's version kept moving under
        the exact write."""
        attempt = first or self.try_fast(serial, slot_id, reading, now, link_id=link_id)
        if attempt.accepted:
            assert attempt.item is not None
            state = state_from_item(attempt.item)
            outcome = usage.apply_reading(state, reading, now)
            after = merged(attempt.item, changed_attributes(state, outcome.state))
            return ReadingResult(attempt.item, after, applied=True, fast=True)
        item = attempt.item
        for _ in range(MAX_ROUNDS):
            if item is None:
                raise UnknownSlot(f"slot {slot_id} is not a slot of this device")
            if not of_link(item, link_id):
                raise CredentialRevoked("this device credential's link has ended; link the device again")
            state = state_from_item(item)
            outcome = usage.apply_reading(state, reading, now)
            if not outcome.applied:
                return ReadingResult(item, item, applied=False, fast=False)
            written = self._write_exact(serial, slot_id, item, state, outcome.state, link_id)
            if not isinstance(written, Refused):
                self._close_delivered_order(serial, slot_id, state.order, outcome.state.order, reading)
                return ReadingResult(item, written, True, fast=False, due_raised=outcome.due_raised)
            item = written.item
        raise SlotBusy(f"slot {slot_id} kept changing; retry the request")

    def restore(self, serial: str, slot_id: str, before: Item, after: Item) -> bool:
        """Put a slot item written by ``try_fast`` back as it was, if nothing wrote it since."""
        update = UpdateBuilder()
        keys = (schema.STATE_PK, schema.STATE_SK)
        for name, value in before.items():
            if name not in keys and after.get(name) != value:
                update.set(name, value)
        for name in after:
            if name not in before:
                update.remove(name)
        if not update.names:
            return True
        # The blind write always leaves a version: restore only over that very write.
        condition = f"{update.name(Attr.VERSION)} = {update.value(after[Attr.VERSION])}"
        result = self.conditional_update(schema.slot_key(serial, slot_id), update, condition)
        if isinstance(result, Refused):
            logger.error("could not restore a slot after a rejected request", extra={"slotId": slot_id})
            return False
        return True

    # --- refresh and reorder side ----------------------------------------------------------------

    def get_item(self, serial: str, slot_id: str) -> Item | None:
        """The slot item (consistent read), or None."""
        answer = self._dynamodb.get_item(
            TableName=self._table_name, Key=key_item(schema.slot_key(serial, slot_id)), ConsistentRead=True
        )
        return answer.get("Item")

    def refresh(self, serial: str, slot_id: str, now: datetime) -> Slot | None:
        """Roll the slot's snapshot if due and bring its reorder fields (and due flag) up to date.

        One consistent read, and one write guarded by the version only if something changes. None if
        the slot does not exist.
        """
        for _ in range(MAX_ROUNDS):
            item = self.get_item(serial, slot_id)
            if item is None:
                return None
            state = state_from_item(item)
            new = usage.refresh(state, now)
            changes = changed_attributes(state, new)
            if state.reorder_fields_valid and set(changes) <= {Attr.VERSION, Attr.REORDER_VERSION}:
                return slot_from_item(item)
            written = self._write_exact(serial, slot_id, item, state, new)
            if not isinstance(written, Refused):
                return slot_from_item(written)
        raise SlotBusy(f"slot {slot_id} kept changing during a forecast refresh")

    def clear_due(
        self, serial: str, slot_id: str, state: usage.UsageState, *, hold_until: datetime | None = None
    ) -> bool:
        """Set ``reorderDue`` false (and hold the slot until ``hold_until``) if the slot is still at
        ``state.version``; False when it moved on (its newer stream record decides again)."""
        update = UpdateBuilder()
        update.set(Attr.REORDER_DUE, {"BOOL": False})
        if hold_until is not None:
            update.set(Attr.REORDER_HELD_UNTIL, time_av(hold_until))
        next_version = num_av(state.version + 1)
        update.set(Attr.VERSION, next_version)
        if state.reorder_fields_valid:
            # Nothing the reorder fields depend on changed: keep the hot path's basis.
            update.set(Attr.REORDER_VERSION, next_version)
        condition = f"{update.name(Attr.VERSION)} = {update.value(num_av(state.version))}"
        return not isinstance(
            self.conditional_update(schema.slot_key(serial, slot_id), update, condition), Refused
        )

    def clear_slot_report_due(self, serial: str, slot_id: str) -> bool:
        """Remove the refill's prompt-report flag; False if it was not there (reported already).

        The version stays: the flag is nothing the reorder fields depend on, and an exact write racing
        this one writes only what its reading changed (a new refill sets the flag again, rightly).
        """
        update = UpdateBuilder()
        update.remove(Attr.SLOT_REPORT_DUE)
        condition = f"attribute_exists({update.name(Attr.SLOT_REPORT_DUE)})"
        return not isinstance(
            self.conditional_update(schema.slot_key(serial, slot_id), update, condition), Refused
        )

    def hold(self, serial: str, slot_id: str, until: datetime) -> bool:
        """Keep the slot from being proposed for an order before ``until`` (and clear its due flag)."""
        update = UpdateBuilder()
        update.set(Attr.REORDER_DUE, {"BOOL": False})
        update.set(Attr.REORDER_HELD_UNTIL, time_av(until))
        update.bump_version()
        condition = f"attribute_exists({update.name(schema.STATE_PK)})"
        return not isinstance(
            self.conditional_update(schema.slot_key(serial, slot_id), update, condition), Refused
        )

    def take_over_claim(
        self, serial: str, slot_id: str, requested_at: datetime | None, now: datetime
    ) -> Slot | None:
        """Re-take a stale claim (still REQUESTED at ``requested_at``) for this invocation; None if the
        claim moved (another invocation took it over, or the order went on)."""
        update = UpdateBuilder()
        update.set(Attr.ORDER_REQUESTED_AT, time_av(now))
        update.set(Attr.REORDER_DUE, {"BOOL": False})
        update.bump_version()
        requested = update.name(Attr.ORDER_REQUESTED_AT)
        same_claim = (
            f"attribute_not_exists({requested})"
            if requested_at is None
            else f"{requested} = {update.value(str_av(to_iso(requested_at)))}"
        )
        condition = (
            f"{update.name(Attr.ORDER_STATE)} = {update.value(str_av(OrderState.REQUESTED.value))}"
            f" AND {same_claim}"
        )
        result = self.conditional_update(schema.slot_key(serial, slot_id), update, condition)
        return None if isinstance(result, Refused) else slot_from_item(result)

    def record_placed_order(self, order: Order) -> None:
        """Create the order's history item, or fill in what it lacks: a notification may have written
        it first, and nothing it knows is overwritten (its state only moves forward there)."""
        update = UpdateBuilder()
        for name, value in present(order_attributes(order)).items():
            update.set_if_absent(name, value)
        self.update(schema.order_key(order.serial, order.instance_id), update)

    # --- internals -------------------------------------------------------------------------------

    def _write_exact(
        self,
        serial: str,
        slot_id: str,
        item: Item,
        old: usage.UsageState,
        new: usage.UsageState,
        link_id: str | None = None,
        extra: dict[str, AttributeValue | None] | None = None,
    ) -> Item | Refused:
        """Write ``new`` (and ``extra`` attributes) over ``item`` if the slot is still at
        ``old.version``; the new item, or the refusal carrying the current one."""
        changes = changed_attributes(old, new)
        changes.update(extra or {})
        update = UpdateBuilder()
        for name, value in changes.items():
            update.set(name, value)
        version = update.name(Attr.VERSION)
        if Attr.VERSION in item:
            condition = f"{version} = {update.value(num_av(old.version))}"
        else:
            condition = (
                f"attribute_exists({update.name(schema.STATE_PK)}) AND attribute_not_exists({version})"
            )
        if link_id is not None:
            condition += f" AND {update.name(Attr.LINK_ID)} = {update.value(str_av(link_id))}"
        try:
            self._dynamodb.update_item(
                TableName=self._table_name,
                Key=key_item(schema.slot_key(serial, slot_id)),
                ConditionExpression=condition,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **update.kwargs(),
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return Refused(err.response.get("Item"))
        return merged(item, changes)

    def _close_delivered_order(
        self, serial: str, slot_id: str, before: SlotOrder, after: SlotOrder, reading: Reading
    ) -> None:
        """A refill delivered the slot's open order: close the order's history as delivered."""
        open_before = before.state in (OrderState.PLACED, OrderState.SHIPPED)
        if open_before and after.state is OrderState.NONE and before.instance_id:
            update = UpdateBuilder()
            update.set_if_absent(Attr.DELIVERED_AT, str_av(to_iso(reading.observed_at)))
            update.set_if_absent(Attr.SLOT_ID, str_av(slot_id))
            self.update(schema.order_key(serial, before.instance_id), update)


def of_link(item: Item, link_id: str | None) -> bool:
    """True when the slot ``item`` belongs to link ``link_id`` (always, when no link is asked for)."""
    return link_id is None or item.get(Attr.LINK_ID) == str_av(link_id)


def fast_write(reading: Reading, now: datetime) -> tuple[_Update, str]:
    """The blind update of ``reading`` and its condition (``usage.fast_path_holds``, compiled)."""
    update = _Update()
    n = update.name
    amount = usage.quantity(reading.quantity)
    q = update.value(decimal_av(amount))
    t = update.value(str_av(to_iso(reading.observed_at)))
    now_av = update.value(str_av(to_iso(now)))
    true = update.value({"BOOL": True})
    one = update.value(num_av(1))
    version, reorder_version = n(Attr.VERSION), n(Attr.REORDER_VERSION)
    headroom, level, remaining = n(Attr.HEADROOM), n(Attr.REORDER_LEVEL), n(Attr.REMAINING_QTY)
    last_absolute, order_state = n(Attr.LAST_ABSOLUTE), n(Attr.ORDER_STATE)

    update.set_expression(Attr.LAST_READING, now_av)
    update.set_expression(Attr.VERSION, f"{version} + {one}")
    update.set_expression(Attr.REORDER_VERSION, f"{reorder_version} + {one}")
    exact = [
        f"{version} = {reorder_version}",
        f"attribute_exists({headroom})",
        f"attribute_exists({level})",
        f"attribute_exists({n(Attr.REORDER_POINT)})",
        f"(attribute_not_exists({last_absolute}) OR {last_absolute} <= {t})",
        f"{n(Attr.SNAPSHOT_AT)} > {update.value(str_av(to_iso(now - usage.SNAPSHOT_PERIOD)))}",
    ]
    if reading.original_quantity is not None:
        original = decimal_av(usage.quantity(reading.original_quantity))
        exact.append(f"{n(Attr.ORIGINAL_QTY)} = {update.value(original)}")
    refill = reading.kind is ReadingKind.REFILLED
    match reading.kind:
        case ReadingKind.REMAINING:
            update.set_expression(Attr.REMAINING_QTY, q)
            update.set_expression(Attr.HEADROOM, f"{q} - {level}")
            update.set_expression(Attr.LAST_ABSOLUTE, t)
            exact.append(f"{remaining} >= {q}")
            not_crossing = f"{level} < {q}"
        case ReadingKind.CONSUMED:
            last_use = n(Attr.LAST_USE)
            update.set_expression(Attr.REMAINING_QTY, f"{remaining} - {q}")
            update.set_expression(Attr.HEADROOM, f"{headroom} - {q}")
            update.set_expression(Attr.LAST_USE, t)
            exact.append(f"{remaining} >= {q}")
            exact.append(f"(attribute_not_exists({last_use}) OR {last_use} <= {t})")
            not_crossing = f"{headroom} > {q}"
        case ReadingKind.REFILLED:
            update.set_expression(Attr.REMAINING_QTY, f"{remaining} + {q}")
            update.set_expression(Attr.HEADROOM, f"{headroom} + {q}")
            update.set(Attr.CANCELS, num_av(0))
            update.set_expression(Attr.LAST_ABSOLUTE, t)
            update.add(Attr.REFILLED_SINCE_SNAPSHOT, decimal_av(amount))
            update.set(Attr.SLOT_REPORT_DUE, {"BOOL": True})
            exact.append(f"{n(Attr.ON_HAND_QTY)} = {update.value(num_av(0))}")
            # A refill may deliver the slot's open order (order_lifecycle.on_refill): the exact path.
            exact.append(f"NOT {order_state} = {update.value(str_av(OrderState.SHIPPED.value))}")
            exact.append(f"NOT {order_state} = {update.value(str_av(OrderState.PLACED.value))}")
            not_crossing = f"{headroom} > {update.value(decimal_av(-amount))}"
    open_states = [str_av(OrderState.PLACED.value), str_av(OrderState.SHIPPED.value)]
    stale_before = update.value(str_av(to_iso(now - usage.STALE_CLAIM_AFTER)))
    now_value = update.value(str_av(to_iso(now)))
    # Any of these means no order may be proposed now (domain.usage.may_raise_due), or one already is.
    no_order_now = [
        f"{n(Attr.REORDER_DUE)} = {true}",
        f"NOT {n(Attr.SUBSCRIBED)} = {true}",
        f"{n(Attr.AUTO_REORDER)} = {update.value({'BOOL': False})}",
        update.is_in(Attr.ORDER_STATE, open_states),
        f"({order_state} = {update.value(str_av(OrderState.REQUESTED.value))}"
        f" AND {n(Attr.ORDER_REQUESTED_AT)} > {stale_before})",
        f"{n(Attr.COOLDOWN)} > {now_value}",
        f"{n(Attr.REORDER_HELD_UNTIL)} > {now_value}",
    ]
    if not refill:  # a refill starts the cancel count over
        no_order_now.append(f"{n(Attr.CANCELS)} >= {update.value(num_av(MAX_CANCELS_BEFORE_REFILL))}")
    condition = " AND ".join(exact) + f" AND ({not_crossing} OR " + " OR ".join(no_order_now) + ")"
    return update, condition
