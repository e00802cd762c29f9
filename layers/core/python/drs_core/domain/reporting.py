"""Daily DRS reporting rules (reference §3): what is due on which report day, and with which figures.

Pure functions of state and time. A *report day* is a UTC date ("2026-01-02", ISO strings sort like
the dates). Each device is visited once per report day, in its hourly bucket; what it reported is
recorded per day, so a retry, a redelivered job or a concurrent worker finds it done:

- ``deviceStatus`` once per report day for every linked device;
- ``slotStatus`` at most once per report day per slot: for a slot consumed since its last report, and
  daily for a subscribed slot, once the slot has been measured at all (before its first reading its
  quantities are placeholders that would mislead DRS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from drs_core.domain.forecast import forecast
from drs_core.domain.models import Device, Slot
from drs_core.domain.usage import last_active_at

# With no measurable consumption nothing will run out: DRS still needs a date, so report one a year
# ahead, far enough that DRS plans nothing, near enough to remain a plausible calendar date.
NO_FORECAST_DAYS = 365.0


@dataclass(frozen=True, slots=True)
class SlotReportMark:
    """What was last reported for one slot: on which report day, and the last use it carried."""

    day: str | None = None
    use_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReportMarks:
    """What was last reported for one device and its slots."""

    device_day: str | None = None
    slots: Mapping[str, SlotReportMark] = field(default_factory=dict)
    # When the device's subscription was last read from DRS by the daily visit (None: not yet).
    subscription_read_at: datetime | None = None

    def slot(self, slot_id: str) -> SlotReportMark:
        return self.slots.get(slot_id) or SlotReportMark()


@dataclass(frozen=True, slots=True)
class SlotFigures:
    """The numbers of one ``slotStatus`` body (quantities never negative, DRS rejects them)."""

    expected_replenishment_date: datetime
    remaining_quantity: float
    original_quantity: float
    total_quantity_on_hand: float
    last_use_date: datetime


def report_day(when: datetime) -> str:
    """The UTC report day of ``when`` as an ISO date."""
    return when.astimezone(UTC).date().isoformat()


def bucket_for_hour(when: datetime) -> str:
    """The report bucket a planner run at ``when`` covers: its UTC hour, "00".."23"."""
    return f"{when.astimezone(UTC).hour:02d}"


def device_report_due(marks: ReportMarks, day: str) -> bool:
    """True until the device's ``deviceStatus`` of ``day`` has been reported."""
    return marks.device_day is None or marks.device_day < day


def slot_report_due(
    *,
    subscribed: bool,
    last_use_at: datetime | None,
    last_reading_at: datetime | None,
    mark: SlotReportMark,
    day: str,
) -> bool:
    """Whether the slot is reported on ``day``: consumed since its last report, or subscribed (daily).

    Never twice on one report day, and never before the slot's first reading.
    """
    if last_use_at is None and last_reading_at is None:
        return False
    if mark.day is not None and mark.day >= day:
        return False
    consumed = last_use_at is not None and (mark.use_at is None or last_use_at > mark.use_at)
    return consumed or subscribed


def most_recently_active(device: Device, slots: Sequence[Slot], now: datetime) -> datetime:
    """DRS's ``mostRecentlyActiveDate``: the device's last activity (``usage.last_active_at``), else when
    it was linked (a linked device that never reported was last active then); never after now."""
    return min(last_active_at(device, slots) or device.linked_at or now, now)


def expected_replenishment_date(slot: Slot, now: datetime) -> datetime:
    """Run-out minus lead time from the slot's rate estimate; ``NO_FORECAST_DAYS`` ahead without one."""
    result = forecast(
        remaining=slot.remaining_quantity,
        on_hand=slot.on_hand_quantity,
        daily_consumption=slot.daily_consumption,
        now=now,
        lead_time_days=slot.policy.lead_time_days,
    )
    if result is None:
        return now + timedelta(days=NO_FORECAST_DAYS)
    return result.expected_replenishment_at


def slot_figures(slot: Slot, *, now: datetime) -> SlotFigures:
    """The ``slotStatus`` figures of a slot. Total on hand is DRS's "stock on hand not yet loaded into
    the device" (Amazon's sample: remaining 1, original 2, on hand 20): the stock shipped and not loaded
    yet, never the slot's contents. The last use falls back to the last reading for a slot never drawn
    on."""
    remaining = max(slot.remaining_quantity, 0.0)
    last_use = slot.last_use_at or slot.last_reading_at or now
    return SlotFigures(
        expected_replenishment_date=expected_replenishment_date(slot, now),
        remaining_quantity=remaining,
        original_quantity=max(slot.original_quantity, 0.0),
        total_quantity_on_hand=max(slot.on_hand_quantity, 0.0),
        last_use_date=min(last_use, now),
    )
