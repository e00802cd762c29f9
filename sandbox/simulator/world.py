"""The simulator's world: how messy Amazon's side is (docs/api.md §3, "The simulator's world").

Off by default (every rate 0: parcels arrive on their estimated date, every notification is delivered
once, in order, at once), so unit tests see the strict simulator; the demo and the soak turn it on. Its
decisions come from one seeded generator, drawn only for switches that are on, so a run repeats:

- **parcels**: each placed order draws how many days after its estimated delivery date it arrives
  (``lateParcelRate``: 1 to ``maxLateDays`` days late; ``earlyParcelRate``: one day early; else on time).
  The order stays open, and replenish answers ``ORDER_INPROGRESS`` with its id, until it arrives.
  ``POST /__sim/orders/{id}/delay`` sets one order's lateness explicitly.
- **notifications**: each one is lost (``lostNotificationRate``: never published), or held back for
  1 to ``maxNotificationDelayHours`` hours (``delayedNotificationRate``), before the channel's own
  duplicate and reorder switches (``duplicateNotificationRate`` and ``reorderedNotificationRate`` are
  the channel's ``duplicateRate`` and ``reorderRate`` under their world names).

Not thread-safe on its own: the Simulator calls it under its lock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from datetime import timedelta

DEFAULT_MAX_LATE_DAYS = 4
DEFAULT_MAX_NOTIFICATION_DELAY_HOURS = 6.0


@dataclass
class WorldSettings:
    """The world's switches (rates are probabilities in [0, 1])."""

    late_parcel_rate: float = 0.0
    early_parcel_rate: float = 0.0
    max_late_days: int = DEFAULT_MAX_LATE_DAYS
    lost_notification_rate: float = 0.0
    delayed_notification_rate: float = 0.0
    max_notification_delay_hours: float = DEFAULT_MAX_NOTIFICATION_DELAY_HOURS
    seed: int = 0


# JSON names of the settings this module owns, and of the channel's two it shows under world names.
JSON_NAMES = {
    "lateParcelRate": "late_parcel_rate",
    "earlyParcelRate": "early_parcel_rate",
    "maxLateDays": "max_late_days",
    "lostNotificationRate": "lost_notification_rate",
    "delayedNotificationRate": "delayed_notification_rate",
    "maxNotificationDelayHours": "max_notification_delay_hours",
    "seed": "seed",
}
CHANNEL_NAMES = {"duplicateNotificationRate": "duplicate_rate", "reorderedNotificationRate": "reorder_rate"}


@dataclass
class WorldCounts:
    """What the world did so far (``GET /__sim/world`` shows it)."""

    late_parcels: int = 0
    early_parcels: int = 0
    lost_notifications: int = 0
    delayed_notifications: int = 0


class World:
    """The seeded draws behind parcels and notification losses and delays."""

    def __init__(self) -> None:
        self.settings = WorldSettings()
        self.counts = WorldCounts()
        self._rng = random.Random(self.settings.seed)

    def configure(self, **changes: object) -> WorldSettings:
        """Change only the named settings (``late_parcel_rate``, ...); a ``seed`` re-seeds."""
        names = {f.name for f in fields(WorldSettings)}
        for name, value in changes.items():
            if name not in names:
                raise ValueError(f"unknown world setting {name}")
            setattr(self.settings, name, value)
        if "seed" in changes:
            self._rng = random.Random(self.settings.seed)
        return self.settings

    def parcel_offset(self) -> timedelta:
        """How long after its estimated delivery date a newly placed order's parcel arrives."""
        settings = self.settings
        if settings.late_parcel_rate > 0 and self._rng.random() < settings.late_parcel_rate:
            self.counts.late_parcels += 1
            return timedelta(days=self._rng.randint(1, max(1, settings.max_late_days)))
        if settings.early_parcel_rate > 0 and self._rng.random() < settings.early_parcel_rate:
            self.counts.early_parcels += 1
            return timedelta(days=-1)
        return timedelta(0)

    def notification_fate(self) -> timedelta | None:
        """None: the notification is lost; else how long it is held back before publishing (0: none)."""
        settings = self.settings
        if settings.lost_notification_rate > 0 and self._rng.random() < settings.lost_notification_rate:
            self.counts.lost_notifications += 1
            return None
        if settings.delayed_notification_rate > 0 and self._rng.random() < settings.delayed_notification_rate:
            self.counts.delayed_notifications += 1
            hours = self._rng.uniform(1.0, max(1.0, settings.max_notification_delay_hours))
            return timedelta(hours=hours)
        return timedelta(0)

    def to_json(self, channel: dict[str, object]) -> dict[str, object]:
        """The settings under their JSON names (with the channel's two), and what the world did."""
        answer: dict[str, object] = {
            json_name: getattr(self.settings, name) for json_name, name in JSON_NAMES.items()
        }
        answer["duplicateNotificationRate"] = channel["duplicateRate"]
        answer["reorderedNotificationRate"] = channel["reorderRate"]
        answer["counts"] = {
            "lateParcels": self.counts.late_parcels,
            "earlyParcels": self.counts.early_parcels,
            "lostNotifications": self.counts.lost_notifications,
            "delayedNotifications": self.counts.delayed_notifications,
        }
        return answer
