"""The simulator's world (docs/api.md §3): late and early parcels, lost and delayed notifications, the
control routes ``/__sim/world`` and ``/__sim/orders/{id}/delay``, over real loopback HTTP."""

from __future__ import annotations

from typing import Any

from sandbox.simulator import SimulatorServer
from sandbox.simulator.control import SimulatorControl, SimulatorControlError
from tests.sandbox.test_simulator import advance, drs, link, place_order, types

DAY = 24 * 3600


def order_info(base: str, token: str, order: str) -> dict[str, Any]:
    answer = drs(base, "getOrderInfo", token, order=order)
    assert answer.status_code == 200, answer.text
    return answer.json()["orderInfoData"]["orderItems"][0]


def test_the_world_is_off_by_default_and_reads_back_what_was_set(simulator: SimulatorServer) -> None:
    control = SimulatorControl(simulator.url)
    # Given a fresh simulator
    before = control.configure_world()
    # When the world is turned on with a seed
    after = control.configure_world(
        lateParcelRate=0.1, lostNotificationRate=0.05, duplicateNotificationRate=0.1, seed=7
    )
    # Then it was off (every rate 0) and now answers exactly the settings given, GET included
    rates = ("lateParcelRate", "lostNotificationRate", "duplicateNotificationRate")
    assert [before[name] for name in rates] == [0.0, 0.0, 0.0]
    assert (after["lateParcelRate"], after["lostNotificationRate"], after["seed"]) == (0.1, 0.05, 7)
    assert after["duplicateNotificationRate"] == 0.1
    assert control.configure_world() == after
    # and the channel's own config shows the same duplicate rate (one setting, two names)
    assert control.request("GET", "/__sim/notifications/config")["duplicateRate"] == 0.1


def test_a_bad_world_setting_is_a_400_and_changes_nothing(simulator: SimulatorServer) -> None:
    control = SimulatorControl(simulator.url)
    for body in ({"lateParcelRate": 1.5}, {"seed": "x"}, {"sunshine": 1}, {"maxLateDays": 0}):
        try:
            control.request("POST", "/__sim/world", json=body)
        except SimulatorControlError as error:
            assert error.status == 400
        else:  # pragma: no cover - the assertion below names the body
            raise AssertionError(f"{body} was accepted")
    assert control.configure_world()["lateParcelRate"] == 0.0


def test_a_delayed_parcel_keeps_the_order_in_progress_until_it_arrives(simulator: SimulatorServer) -> None:
    control = SimulatorControl(simulator.url)
    # Given an order placed at day 0 (estimated delivery day 3), shipped, its parcel 2 days late
    device = link(simulator.url)
    order = place_order(simulator.url, device)
    control.order_action(order, "ship")
    delayed = control.delay_order(order, 2)
    # When 4 days pass (the estimate is behind us, the parcel is not here yet)
    advance(simulator.url, 4 * DAY)
    token = _fresh_token(simulator.url, device)
    again = drs(simulator.url, "replenish", token).json()
    info_late = order_info(simulator.url, token, order)
    # Then replenish answers ORDER_INPROGRESS naming the open order, which DRS shows shipped
    assert delayed["arrivesAt"] == "2026-01-06T00:00:00.000Z"
    assert again == {"detailCode": "ORDER_INPROGRESS", "eventInstanceId": order}
    assert info_late["status"] == "Shipped"
    assert info_late["expectedDeliveryDate"] == "2026-01-04T00:00:00.000Z"
    # and once the parcel arrives the order is delivered and the slot takes a new order
    advance(simulator.url, 2 * DAY)
    token = _fresh_token(simulator.url, device)
    assert order_info(simulator.url, token, order)["status"] == "Delivered"
    assert drs(simulator.url, "replenish", token).json()["detailCode"] == "STANDARD_ORDER_PLACED"
    delivered = next(o for o in control.orders() if o["instanceId"] == order)
    assert (delivered["state"], delivered["closedAt"]) == ("DELIVERED", "2026-01-06T00:00:00.000Z")


def test_delaying_an_unknown_or_closed_order_is_refused(simulator: SimulatorServer) -> None:
    control = SimulatorControl(simulator.url)
    device = link(simulator.url)
    order = place_order(simulator.url, device)
    control.order_action(order, "deliver")
    for instance_id, days, status in (("nope", 1, 404), (order, 1, 409)):
        try:
            control.delay_order(instance_id, days)
        except SimulatorControlError as error:
            assert error.status == status
        else:  # pragma: no cover
            raise AssertionError(f"delay of {instance_id} accepted")


def test_late_parcels_follow_the_seeded_rate(simulator: SimulatorServer) -> None:
    control = SimulatorControl(simulator.url)
    # Given every parcel late (rate 1), at most 2 days
    control.configure_world(lateParcelRate=1.0, maxLateDays=2, seed=3)
    devices = [link(simulator.url, serial=f"SN-{n}") for n in range(6)]
    # When each device orders
    orders = [place_order(simulator.url, device) for device in devices]
    # Then every parcel arrives 1 or 2 days after its estimate, and the world counted them
    placed = {o["instanceId"]: o for o in control.orders()}
    lateness = {(_days(placed[o]["arrivesAt"]) - _days(placed[o]["estimatedDeliveryDate"])) for o in orders}
    assert lateness <= {1, 2} and lateness
    assert control.configure_world()["counts"]["lateParcels"] == 6


def test_lost_notifications_are_never_published_but_kept_apart(simulator: SimulatorServer) -> None:
    control = SimulatorControl(simulator.url)
    # Given a world that loses every notification
    control.configure_world(lostNotificationRate=1.0)
    # When a device links and orders
    device = link(simulator.url)
    place_order(simulator.url, device)
    # Then nothing reached the topic, and the lost ones are listed with their types
    assert types(simulator.url) == []
    lost = [n["message"]["notificationInfo"]["notificationType"] for n in control.lost_notifications()]
    assert lost == [
        "DeviceRegisteredNotification",
        "SubscriptionChangedNotification",
        "OrderPlacedNotification",
    ]


def test_delayed_notifications_arrive_later_on_the_clock(simulator: SimulatorServer) -> None:
    control = SimulatorControl(simulator.url)
    # Given a world that holds every notification back 1 to 2 hours
    control.configure_world(delayedNotificationRate=1.0, maxNotificationDelayHours=2)
    link(simulator.url)
    # When no time passed, then two hours
    now_types = types(simulator.url)
    advance(simulator.url, 2 * 3600)
    # Then none was out at once, and both are out after the delay (each held its own time: any order)
    assert now_types == []
    assert sorted(types(simulator.url)) == [
        "DeviceRegisteredNotification",
        "SubscriptionChangedNotification",
    ]


def test_get_order_info_answers_null_date_before_the_order_is_placed(simulator: SimulatorServer) -> None:
    # Given an order waiting in the resolution flow (not placed yet: no delivery estimate)
    device = link(simulator.url, order_issue=True)
    order = place_order(simulator.url, device)
    # When the device asks DRS about it
    item = order_info(simulator.url, device.access_token, order)
    # Then the date is null and the status pending
    assert (item["expectedDeliveryDate"], item["status"]) == (None, "Pending")


def _days(iso: str) -> int:
    return int(iso[8:10])


def _fresh_token(base: str, device: Any) -> str:
    from tests.sandbox.test_simulator import refreshed

    return refreshed(base, device)
