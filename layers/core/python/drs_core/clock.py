"""One injectable clock, so the sandbox and tests can run days of device life in seconds.

Every piece of code that needs "now" takes a ``Clock`` (or calls ``clock.now()`` on the process-wide
default). Times are timezone-aware UTC datetimes throughout.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to (tests, the simulator, the sandbox)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime(2026, 1, 1, tzinfo=UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when.astimezone(UTC)


def to_iso(when: datetime) -> str:
    """ISO-8601 in UTC with millisecond precision and a ``Z`` suffix, as DRS writes times."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp; a naive one is taken as UTC."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


_default: Clock = SystemClock()


def default_clock() -> Clock:
    return _default


def use_clock(clock: Clock) -> None:
    """Replace the process-wide clock (the sandbox shares the simulator's)."""
    global _default
    _default = clock
