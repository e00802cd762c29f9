"""What the demo shows of running dry: stockout hours per slot, shaded dry periods on the charts, and the
check that no slot ran dry while an order placed on time would have prevented it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

from sandbox.demo import DRY_SHADE, render_chart
from sandbox.scenario import Event, EventKind, check_no_avoidable_dry, dry_hours, dry_periods

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DELIVERY = timedelta(days=3)
GRACE = timedelta(hours=12)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# A slot that empties at hour 100, idles empty until hour 130, is loaded, and runs on.
HISTORY = [(at(0), 50.0), (at(50), 20.0), (at(100), 0.0), (at(106), 0.0), (at(130), 0.0), (at(130.01), 100.0)]
LINKED = {"SN-1": [(T0, None)]}


def event(kind: EventKind, hours: float) -> Event:
    return Event(at(hours), kind, "SN-1", "Filter")


def test_dry_periods_are_the_spans_at_zero_and_their_hours_are_counted() -> None:
    assert dry_periods(HISTORY) == [(at(100), at(130))]
    assert dry_hours(HISTORY) == 30.0
    assert dry_periods([(at(0), 5.0), (at(10), 1.0)]) == [] and dry_hours([(at(0), 5.0)]) == 0.0


def test_a_slot_dry_that_could_have_ordered_in_time_fails_the_check() -> None:
    # Given a slot dry from hour 100: an order had to be placed by hour 100 - 72 - 12 = 16
    dry = {("SN-1", "Filter"): dry_periods(HISTORY)}
    # When the backend ordered only at hour 40 (too late), or not at all
    late = check_no_avoidable_dry(
        dry, [event(EventKind.ORDER_PLACED, 40)], LINKED, delivery_time=DELIVERY, grace=GRACE
    )
    never = check_no_avoidable_dry(dry, [], LINKED, delivery_time=DELIVERY, grace=GRACE)
    # Then the check names the slot and the moment it could have ordered
    assert len(late) == 1 and len(never) == 1
    assert "SN-1/Filter: dry from 2026-01-05T04:00:00.000Z" in late[0]
    assert "could have ordered at 2026-01-01T16:00:00.000Z" in late[0]


def test_a_slot_that_could_not_have_ordered_in_time_passes_the_check() -> None:
    dry = {("SN-1", "Filter"): dry_periods(HISTORY)}

    def check(events: list[Event], linked: dict = LINKED, tests: tuple[str, ...] = ()) -> list[str]:
        return check_no_avoidable_dry(
            dry, events, linked, delivery_time=DELIVERY, grace=GRACE, test_devices=tests
        )

    # An order was open (Amazon delivered late), the customer had cancelled within the cooldown,
    # the device was linked too late to save it, two cancels block reorders until a refill, a test device
    assert check([event(EventKind.ORDER_PLACED, 10)]) == []
    assert check([event(EventKind.ORDER_PLACED, 5), event(EventKind.ORDER_CANCELLED, 8)]) == []
    assert check([], {"SN-1": [(at(20), None)]}) == []
    two_cancels = [
        event(EventKind.ORDER_PLACED, -210),
        event(EventKind.ORDER_CANCELLED, -200),
        event(EventKind.ORDER_PLACED, -160),
        event(EventKind.ORDER_CANCELLED, -150),
    ]
    assert check(two_cancels) == []
    assert len(check(two_cancels[:2])) == 1  # one cancel, cooldown over: it could have ordered
    assert check([], tests=("SN-1",)) == []
    # but an order delivered before the moment leaves the slot free to order: it should have
    assert len(check([event(EventKind.ORDER_PLACED, 1), event(EventKind.ORDER_DELIVERED, 10)])) == 1


def test_the_chart_shades_each_dry_period() -> None:
    svg = render_chart("SN-1 / Filter", "L", 100.0, HISTORY, [], T0, at(150), dry=dry_periods(HISTORY))
    root = ElementTree.fromstring(svg)  # noqa: S314 - a string we just rendered
    shaded = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("fill") == DRY_SHADE]
    # One shade per dry period, plus its legend swatch; the shade spans the 30 dry hours of 150
    assert len(shaded) == 2
    width = float(shaded[0].get("width") or 0)
    assert width == round((760 - 70 - 20) * 30 / 150, 1)
