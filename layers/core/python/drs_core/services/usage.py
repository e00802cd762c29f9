"""Usage ingestion: apply a device's readings to its slots, one conditional write per reading.

A request is all or nothing with respect to unknown slots, without reading first: every slot's first
reading is sent as the blind hot-path write (a refused write stores nothing, and its refusal tells
whether the slot exists). Only when every slot is known do the exact writes and the further readings
follow; if a slot is unknown, the blind writes that succeeded are put back (guarded by their version),
so the tables hold what they held before. Readings of one slot apply in ``observedAt`` order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from aws_lambda_powertools.metrics import MetricUnit

from drs_core.adapters.items import slot_from_item
from drs_core.adapters.usage_store import FastAttempt, ReadingResult, UsageStore, of_link
from drs_core.domain.models import Reading, Slot
from drs_core.domain.usage import reading_problem
from drs_core.errors import ConflictingReadings, CredentialRevoked, InvalidReading, UnknownSlot
from drs_core.observability import logger, metrics


@dataclass(frozen=True)
class IngestResult:
    """The slots after the request (in order of first mention) and what happened to the readings."""

    slots: list[Slot]
    applied: int
    stale: int
    due_raised: int
    exact_writes: int


def ingest_readings(
    serial: str, readings: Sequence[Reading], *, link_id: str, store: UsageStore, now: datetime
) -> IngestResult:
    """Apply ``readings`` of device ``serial``, sent with the credential of link ``link_id``, at ``now``.

    Raises ``InvalidReading`` (nothing written) for a reading observed too far in the future,
    ``UnknownSlot`` (nothing kept) when a reading names a slot the device does not have and
    ``CredentialRevoked`` (nothing kept) when the device's slots no longer belong to ``link_id``.
    """
    for reading in readings:
        problem = reading_problem(reading, now)
        if problem is not None:
            raise InvalidReading(f"slot {reading.slot_id}: {problem}")
    by_slot: dict[str, list[Reading]] = {}
    for reading in distinct_readings(readings):
        by_slot.setdefault(reading.slot_id, []).append(reading)
    for group in by_slot.values():
        group.sort(key=lambda reading: reading.observed_at)  # stable: equal times keep request order

    first = _first_attempts(serial, by_slot, link_id=link_id, store=store, now=now)
    results: list[ReadingResult] = []
    final: dict[str, ReadingResult] = {}
    for slot_id, group in by_slot.items():
        result = store.apply(serial, slot_id, group[0], now, first=first[slot_id], link_id=link_id)
        results.append(result)
        for reading in group[1:]:
            result = store.apply(serial, slot_id, reading, now, link_id=link_id)
            results.append(result)
        final[slot_id] = result

    outcome = IngestResult(
        slots=[slot_from_item(final[slot_id].after) for slot_id in by_slot],
        applied=sum(1 for r in results if r.applied),
        stale=sum(1 for r in results if not r.applied),
        due_raised=sum(1 for r in results if r.due_raised),
        exact_writes=sum(1 for r in results if not r.fast and r.applied),
    )
    _record_metrics(outcome)
    return outcome


def distinct_readings(readings: Sequence[Reading]) -> list[Reading]:
    """The readings with each ``(slotId, observedAt)`` once: a device that sends one reading twice in a
    request (a retry within its own buffer) means it once. Two different readings of one slot at one
    time contradict each other: ``ConflictingReadings``, nothing written."""
    seen: dict[tuple[str, datetime], Reading] = {}
    for reading in readings:
        key = (reading.slot_id, reading.observed_at)
        earlier = seen.setdefault(key, reading)
        if earlier != reading:
            raise ConflictingReadings(
                f"slot {reading.slot_id}: two different readings observed at the same time"
            )
    return list(seen.values())


def _first_attempts(
    serial: str, by_slot: dict[str, list[Reading]], *, link_id: str, store: UsageStore, now: datetime
) -> dict[str, FastAttempt]:
    """Each slot's first blind write; on an unknown slot or an ended link, undo the accepted ones and
    refuse."""
    attempts: dict[str, FastAttempt] = {}
    for slot_id, group in by_slot.items():
        attempt = store.try_fast(serial, slot_id, group[0], now, link_id=link_id)
        if not attempt.accepted and attempt.item is None:
            _undo(serial, attempts, by_slot, link_id=link_id, store=store, now=now)
            logger.info("usage refused: unknown slot", extra={"slotId": slot_id})
            raise UnknownSlot(f"slot {slot_id} is not a slot of this device")
        if not attempt.accepted and not of_link(attempt.item or {}, link_id):
            _undo(serial, attempts, by_slot, link_id=link_id, store=store, now=now)
            logger.info("usage refused: credential of an ended link", extra={"slotId": slot_id})
            metrics.add_metric(name="DeviceCredentialRevoked", unit=MetricUnit.Count, value=1)
            raise CredentialRevoked("this device credential's link has ended; link the device again")
        attempts[slot_id] = attempt
    return attempts


def _undo(
    serial: str,
    attempts: dict[str, FastAttempt],
    by_slot: dict[str, list[Reading]],
    *,
    link_id: str,
    store: UsageStore,
    now: datetime,
) -> None:
    for slot_id, attempt in attempts.items():
        if attempt.accepted:
            written = store.apply(serial, slot_id, by_slot[slot_id][0], now, first=attempt, link_id=link_id)
            store.restore(serial, slot_id, written.before, written.after)


def _record_metrics(outcome: IngestResult) -> None:
    metrics.add_metric(name="ReadingsApplied", unit=MetricUnit.Count, value=outcome.applied)
    if outcome.stale:
        metrics.add_metric(name="ReadingsStale", unit=MetricUnit.Count, value=outcome.stale)
    if outcome.exact_writes:
        metrics.add_metric(name="ReadingExactWrites", unit=MetricUnit.Count, value=outcome.exact_writes)
    if outcome.due_raised:
        metrics.add_metric(name="ReorderDueRaised", unit=MetricUnit.Count, value=outcome.due_raised)
        logger.info("reorder due raised", extra={"slots": outcome.due_raised})
