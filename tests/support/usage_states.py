"""A measured slot's usage state and readings, for the pure rules' tests and the store's."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from drs_core.domain import usage
from drs_core.domain.models import Reading, ReadingKind

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def measured(**changes: Any) -> usage.UsageState:
    """10 of 10 left, reorder point 2 (20 %), consistent reorder fields (version 3), snapshot 2 hours
    old, last reading an hour ago, subscribed; ``changes`` replace any of it."""
    state = usage.UsageState(
        version=3,
        reorder_version=3,
        remaining=Decimal(10),
        original=Decimal(10),
        reorder_point=Decimal(2),
        reorder_level=Decimal(2),
        headroom=Decimal(8),
        snapshot_remaining=Decimal(10),
        snapshot_at=NOW - timedelta(hours=2),
        last_reading_at=NOW - timedelta(hours=1),
        subscribed=True,
    )
    return replace(state, **changes)


def reading(kind: ReadingKind, amount: float, at: datetime = NOW, original: float | None = None) -> Reading:
    """A reading of the slot ``Filter``."""
    return Reading("Filter", at, kind, amount, original)
