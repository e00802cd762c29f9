"""Consumption-rate and reorder-point upkeep off the hot path.

The usage path re-estimates a slot's rate itself once a day while the device reports (the daily
snapshot roll, ``domain.usage``). ``refresh_forecast`` does the same on demand, for callers that visit
slots anyway (the daily report worker) or that changed something the reorder point depends on and want
the slot re-evaluated at once (a policy or subscription change): it rolls the snapshot if it is due,
recomputes reorder point, level and headroom, and raises ``reorderDue`` when the slot is now due.

Nothing here is required for consistency: every write that bumps a slot's ``version`` without bumping
``reorderVersion`` makes the next reading recompute the reorder fields.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from drs_core.adapters.usage_store import UsageStore
from drs_core.domain.models import Slot


def refresh_forecast(store: UsageStore, slot: Slot, now: datetime) -> Slot | None:
    """The slot after its forecast refresh (one consistent read, at most one guarded write); None if
    the slot no longer exists."""
    return store.refresh(slot.serial, slot.slot_id, now)


def forecast_refresher(store: UsageStore) -> Callable[[Slot, datetime], Slot | None]:
    """``refresh_forecast`` bound to ``store``: the report worker's ``SlotHooks.refresh_forecast``."""

    def refresh(slot: Slot, now: datetime) -> Slot | None:
        return refresh_forecast(store, slot, now)

    return refresh
