"""The DRS + LWA simulator over real loopback HTTP, driven with plain ``requests`` (docs/api.md §3 rules)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from drs_core.clock import ManualClock, parse_iso
from sandbox.simulator import SimulatorServer

CLIENT_ID = "amzn1.application-oa2-client.sandbox"
CLIENT_SECRET = "sandbox-secret"
REDIRECT_URI = "https://localhost/callback"
PREFIX = "com.amazon.dash.replenishment."
PRODUCT = {"asin": "B00EXAMPLE", "quantity": 2, "unit": "count"}
SLOTS = {"PaperTowel": PRODUCT, "Soap": {"asin": "B00SOAP001", "quantity": 1, "unit": "count"}}

# operation -> (method, path template, x-amzn-type-version, x-amzn-accept-type)
ROUTES: dict[str, tuple[str, str, str, str]] = {
    "replenish": ("POST", "/replenish/{slot}", "DrsReplenishInput@1.0", "DrsReplenishResult@1.0"),
    "slotStatus": ("POST", "/slotStatus/{slot}", "DrsSlotStatusInput@1.0", "DrsSlotStatusResult@1.0"),
    "deviceStatus": ("POST", "/deviceStatus", "DrsDeviceStatusInput@1.0", "DrsDeviceStatusResult@1.0"),
    "subscriptionInfo": (
        "GET",
        "/subscriptionInfo",
        "DrsSubscriptionInfoInput@1.0",
        "DrsSubscriptionInfoResult@2.0",
    ),
    "deregistration": ("DELETE", "/registration", "DrsDeregisterInput@2.0", "DrsDeregisterResult@1.0"),
    "legacyDeregistration": (
        "DELETE",
        "/deviceModels/{model}/devices/{serial}/registration",
        "DrsDeregisterInput@1.0",
        "DrsDeregisterResult@1.0",
    ),
    "getOrderInfo": ("GET", "/getOrderInfo/{order}", "DrsOrderInfoInput@1.0", "DrsOrderInfoResult@1.0"),
    "cancelTestOrder": (
        "DELETE",
        "/testOrders/slots/{slot}",
        "DrsCancelTestOrdersInput@1.0",
        "DrsCancelTestOrdersResult@1.0",
    ),
    "cancelTestOrders": (
        "DELETE",
        "/testOrders",
        "DrsCancelTestOrdersInput@1.0",
        "DrsCancelTestOrdersResult@1.0",
    ),
}
SLOT_REPORT = {
    "expectedReplenishmentDate": "2026-01-20T00:00:00.000Z",
    "remainingQuantityInUnit": 3.5,
    "originalQuantityInUnit": 10,
    "totalQuantityOnHand": 3.5,
    "lastUseDate": "2026-01-01T00:00:00.000Z",
}


@dataclass
class Linked:
    """A device registered through the LWA code exchange, as the backend would hold it."""

    customer_id: str
    app_token: str
    serial: str
    model: str
    access_token: str
    refresh_token: str


# ---------------------------------------------------------------------- helpers (plain HTTP)
def drs(
    base: str,
    operation: str,
    token: str | None,
    *,
    slot: str = "PaperTowel",
    order: str = "none",
    model: str = "MODEL-1",
    serial: str = "SN-1",
    accept: str | None = None,
    body: Any = None,
    omit: tuple[str, ...] = (),
) -> requests.Response:
    """One DRS call with the documented headers (``omit`` drops some, ``accept`` overrides the result)."""
    method, template, input_type, result_type = ROUTES[operation]
    headers = {
        "x-amzn-type-version": PREFIX + input_type,
        "x-amzn-accept-type": PREFIX + (accept or result_type),
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    for name in omit:
        headers.pop(name, None)
    path = template.format(slot=slot, order=order, model=model, serial=serial)
    return requests.request(method, base + path, headers=headers, json=body, timeout=5)


def control(base: str, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{base}/__sim{path}", json=body, timeout=5)


def advance(base: str, seconds: float) -> str:
    answer = control(base, "POST", "/clock", {"advanceSeconds": seconds})
    assert answer.status_code == 200
    return answer.json()["now"]


def new_customer(base: str, order_issue: bool = False) -> dict[str, str]:
    answer = control(base, "POST", "/customers", {"name": "Ann", "orderIssue": order_issue})
    assert answer.status_code == 201
    return answer.json()


def authorize(base: str, customer_id: str, **overrides: Any) -> str:
    body = {"customerId": customer_id, "modelId": "MODEL-1", "serial": "SN-1", "slots": SLOTS, **overrides}
    answer = control(base, "POST", "/authorize", body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["redirectUri"] == REDIRECT_URI
    return answer.json()["authorizationCode"]


def token_call(base: str, **form: str) -> requests.Response:
    return requests.post(f"{base}/auth/o2/token", data=form, timeout=5)


def exchange(base: str, code: str, **extra: str) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
    }
    return token_call(base, **{"client_secret": CLIENT_SECRET, **form, **extra})


def link(
    base: str,
    *,
    serial: str = "SN-1",
    model: str = "MODEL-1",
    test_device: bool = False,
    order_issue: bool = False,
    customer: dict[str, str] | None = None,
    slots: dict[str, Any] | None = None,
) -> Linked:
    customer = customer or new_customer(base, order_issue)
    code = authorize(
        base,
        customer["customerId"],
        serial=serial,
        modelId=model,
        isTestDevice=test_device,
        slots=slots or SLOTS,
    )
    answer = exchange(base, code)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    return Linked(
        customer["customerId"],
        customer["appAccessToken"],
        serial,
        model,
        tokens["access_token"],
        tokens["refresh_token"],
    )


def messages(base: str) -> list[dict[str, Any]]:
    """The Message documents of every delivery so far, in delivery order."""
    deliveries = control(base, "GET", "/notifications").json()["notifications"]
    return [json.loads(entry["envelope"]["Message"]) for entry in deliveries]


def types(base: str) -> list[str]:
    return [message["notificationInfo"]["notificationType"] for message in messages(base)]


def place_order(base: str, device: Linked, slot: str = "PaperTowel") -> str:
    answer = drs(base, "replenish", device.access_token, slot=slot)
    assert answer.status_code == 200, answer.text
    return answer.json()["eventInstanceId"]


def refreshed(base: str, device: Linked) -> str:
    """A fresh access token for the device (after long clock advances the first one has expired)."""
    answer = token_call(
        base,
        grant_type="refresh_token",
        refresh_token=device.refresh_token,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


# ---------------------------------------------------------------------- LWA
def test_code_exchange_gives_bearer_tokens_that_tokeninfo_attributes_to_the_customer(
    simulator: SimulatorServer,
) -> None:
    # Given a customer's consent for a device
    customer = new_customer(simulator.url)
    code = authorize(simulator.url, customer["customerId"])
    # When the backend exchanges the code with the client secret
    answer = exchange(simulator.url, code)
    # Then it gets LWA-shaped tokens, and tokeninfo names our client and that customer
    tokens = answer.json()
    assert answer.status_code == 200
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 3600
    assert tokens["access_token"].startswith("Atza|") and tokens["refresh_token"].startswith("Atzr|")
    info = requests.get(
        f"{simulator.url}/auth/o2/tokeninfo", params={"access_token": tokens["access_token"]}, timeout=5
    ).json()
    assert info["aud"] == CLIENT_ID
    assert info["user_id"] == customer["customerId"] and info["user_id"].startswith("amzn1.account.")
    assert info["exp"] == 3600 and {"app_id", "iss", "iat"} <= set(info)


def test_reused_code_is_invalid_grant_and_tokens_already_issued_stay_valid(
    simulator: SimulatorServer,
) -> None:
    # Given a code that was exchanged once
    customer = new_customer(simulator.url)
    code = authorize(simulator.url, customer["customerId"])
    first = exchange(simulator.url, code).json()
    # When it is exchanged again
    again = exchange(simulator.url, code)
    # Then LWA refuses it, and the first tokens still work
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert drs(simulator.url, "subscriptionInfo", first["access_token"]).status_code == 200


@pytest.mark.parametrize(("wait", "status"), [(299, 200), (300, 400)])
def test_code_lives_five_minutes(simulator: SimulatorServer, wait: int, status: int) -> None:
    # Given a fresh code
    customer = new_customer(simulator.url)
    code = authorize(simulator.url, customer["customerId"])
    # When it is exchanged after `wait` simulated seconds
    advance(simulator.url, wait)
    answer = exchange(simulator.url, code)
    # Then it works only within five minutes
    assert answer.status_code == status
    if status == 400:
        assert answer.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "override", [{"client_secret": "wrong-secret"}, {"client_id": "amzn1.application-oa2-client.other"}]
)
def test_wrong_secret_or_unknown_client_is_invalid_client(
    simulator: SimulatorServer, override: dict[str, str]
) -> None:
    # Given a valid code
    customer = new_customer(simulator.url)
    code = authorize(simulator.url, customer["customerId"])
    # When the exchange names the wrong secret or client
    answer = exchange(simulator.url, code, **override)
    # Then LWA answers 401 invalid_client, and the code is still usable
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    assert exchange(simulator.url, code).status_code == 200


def test_pkce_exchange_checks_the_verifier_and_needs_no_secret(simulator: SimulatorServer) -> None:
    # Given a code issued with an S256 challenge (mobile SDK)
    verifier = "v" * 64
    customer = new_customer(simulator.url)
    code = authorize(simulator.url, customer["customerId"], pkce={"codeChallenge": s256(verifier)})
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
    }
    # When it is exchanged with a wrong verifier, then with the right one (never with a secret)
    wrong = token_call(simulator.url, **form, code_verifier="x" * 64)
    right = token_call(simulator.url, **form, code_verifier=verifier)
    # Then only the matching verifier gets tokens
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert right.status_code == 200 and right.json()["access_token"].startswith("Atza|")


def test_refresh_issues_new_access_token_and_keeps_the_refresh_token(simulator: SimulatorServer) -> None:
    # Given a linked device whose access token expired
    device = link(simulator.url)
    advance(simulator.url, 3601)
    # When the backend refreshes
    answer = token_call(
        simulator.url,
        grant_type="refresh_token",
        refresh_token=device.refresh_token,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    # Then a new access token works, and the refresh token did not rotate
    tokens = answer.json()
    assert answer.status_code == 200 and tokens["refresh_token"] == device.refresh_token
    assert tokens["access_token"] != device.access_token
    assert drs(simulator.url, "subscriptionInfo", tokens["access_token"]).status_code == 200


def test_refresh_after_deregistration_is_invalid_grant(simulator: SimulatorServer) -> None:
    # Given a device deregistered from Amazon's side
    device = link(simulator.url)
    assert control(simulator.url, "DELETE", f"/devices/{device.serial}").status_code == 200
    # When the backend tries to refresh
    answer = token_call(
        simulator.url,
        grant_type="refresh_token",
        refresh_token=device.refresh_token,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    # Then the grant is gone
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_tokeninfo_rejects_unknown_and_expired_tokens_but_app_tokens_never_expire(
    simulator: SimulatorServer,
) -> None:
    # Given a device token and an app token, an hour and a second later
    device = link(simulator.url)
    advance(simulator.url, 3601)

    def info(token: str) -> requests.Response:
        return requests.get(f"{simulator.url}/auth/o2/tokeninfo", params={"access_token": token}, timeout=5)

    # When tokeninfo is asked about each, and about a made-up token
    expired, app, unknown = info(device.access_token), info(device.app_token), info("Atza|made-up")
    # Then only the app token is still valid, and it belongs to the customer
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_token"
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_token"
    assert app.status_code == 200 and app.json()["user_id"] == device.customer_id


# ---------------------------------------------------------------------- DRS: headers, tokens, slots
def test_missing_bearer_is_400_about_the_token(simulator: SimulatorServer) -> None:
    # Given a linked device
    link(simulator.url)
    # When a call carries the version headers but no bearer
    answer = drs(simulator.url, "subscriptionInfo", None)
    # Then it is a 400 typed as a token problem (x-amzn-ErrorType) with a request id, as DRS answers
    assert answer.status_code == 400 and answer.headers["x-amzn-ErrorType"] == "InvalidTokenException"
    assert answer.headers["x-amzn-ErrorType"] == "InvalidTokenException"
    assert answer.headers["x-amzn-RequestId"]


@pytest.mark.parametrize(
    ("omit", "accept"),
    [
        (("x-amzn-type-version",), None),
        (("x-amzn-accept-type",), None),
        ((), "DrsReplenishResult@2.0"),
        ((), "DrsSlotStatusResult@1.0"),
    ],
)
def test_missing_or_unknown_version_header_is_400_not_about_the_token(
    simulator: SimulatorServer, omit: tuple[str, ...], accept: str | None
) -> None:
    # Given a linked device
    device = link(simulator.url)
    # When replenish misses a version header or asks for an undocumented result version
    answer = drs(simulator.url, "replenish", device.access_token, omit=omit, accept=accept)
    # Then it is a 400 the client must not mistake for token trouble, and nothing was ordered
    assert answer.status_code == 400
    assert "token" not in answer.json()["message"].lower()
    assert "x-amzn-type-version" not in answer.headers
    assert types(simulator.url).count("OrderPlacedNotification") == 0


def test_wrong_deregistration_input_version_is_400(simulator: SimulatorServer) -> None:
    # Given a linked device
    device = link(simulator.url)
    # When the current deregistration path is called with the legacy @1.0 input version
    answer = requests.delete(
        f"{simulator.url}/registration",
        headers={
            "Authorization": f"Bearer {device.access_token}",
            "x-amzn-type-version": PREFIX + "DrsDeregisterInput@1.0",
            "x-amzn-accept-type": PREFIX + "DrsDeregisterResult@1.0",
        },
        timeout=5,
    )
    # Then it is refused and the device stays registered
    assert answer.status_code == 400
    assert drs(simulator.url, "subscriptionInfo", device.access_token).status_code == 200


def test_access_token_expires_after_an_hour(simulator: SimulatorServer) -> None:
    # Given a linked device
    device = link(simulator.url)
    # When 3601 simulated seconds pass
    advance(simulator.url, 3601)
    answer = drs(simulator.url, "replenish", device.access_token)
    # Then its token is refused with a token message
    assert answer.status_code == 400 and answer.headers["x-amzn-ErrorType"] == "InvalidTokenException"


@pytest.mark.parametrize("operation", ["replenish", "slotStatus", "cancelTestOrder"])
def test_unknown_slot_is_404(simulator: SimulatorServer, operation: str) -> None:
    # Given a linked test device
    device = link(simulator.url, test_device=True)
    # When a slot route names a slot the device does not have
    answer = drs(simulator.url, operation, device.access_token, slot="NoSuchSlot", body=SLOT_REPORT)
    # Then it is 404
    assert answer.status_code == 404


def test_slot_check_comes_after_the_token_check(simulator: SimulatorServer) -> None:
    # Given a made-up token
    # When it is used on an unknown slot
    answer = drs(simulator.url, "replenish", "Atza|made-up", slot="NoSuchSlot")
    # Then the token is rejected first
    assert answer.status_code == 400 and answer.headers["x-amzn-ErrorType"] == "InvalidTokenException"


# ---------------------------------------------------------------------- DRS: routes
def test_replenish_places_an_order_and_publishes_order_placed(simulator: SimulatorServer) -> None:
    # Given a linked device
    device = link(simulator.url)
    # When it replenishes a subscribed slot
    answer = drs(simulator.url, "replenish", device.access_token)
    # Then a standard order is placed, the result type echoed, and OrderPlaced names it
    body = answer.json()
    assert answer.status_code == 200
    assert answer.headers["x-amzn-type-version"] == PREFIX + "DrsReplenishResult@1.0"
    assert body["detailCode"] == "STANDARD_ORDER_PLACED"
    assert body["eventInstanceId"].startswith("amzn1.dash.v2.o.")
    placed = messages(simulator.url)[-1]
    assert placed["notificationInfo"]["notificationType"] == "OrderPlacedNotification"
    assert placed["orderInfo"]["instanceId"] == body["eventInstanceId"]
    assert placed["orderInfo"]["productInfo"][0]["estimatedDeliveryDate"] == "2026-01-04T00:00:00.000Z"


def test_second_replenish_answers_order_inprogress_with_the_open_order(simulator: SimulatorServer) -> None:
    # Given a slot with an open order
    device = link(simulator.url)
    first = place_order(simulator.url, device)
    # When the device replenishes the same slot again
    answer = drs(simulator.url, "replenish", device.access_token)
    # Then nothing new is placed and the open order's id comes back
    assert answer.json() == {"detailCode": "ORDER_INPROGRESS", "eventInstanceId": first}
    assert types(simulator.url).count("OrderPlacedNotification") == 1


def test_replenish_without_a_selected_product_is_400(simulator: SimulatorServer) -> None:
    # Given a slot whose product the customer cleared
    device = link(simulator.url)
    control(simulator.url, "PUT", f"/devices/{device.serial}/subscription", {"slots": {"Soap": None}})
    # When the device replenishes it
    answer = drs(simulator.url, "replenish", device.access_token, slot="Soap")
    # Then it is a 400 that is not about the token
    assert answer.status_code == 400 and "token" not in answer.json()["message"].lower()


def test_slot_status_and_device_status_take_documented_bodies(simulator: SimulatorServer) -> None:
    # Given a linked device
    device = link(simulator.url)
    # When it reports a slot and its activity with the documented bodies
    slot = drs(simulator.url, "slotStatus", device.access_token, body=SLOT_REPORT)
    active = drs(
        simulator.url,
        "deviceStatus",
        device.access_token,
        body={"mostRecentlyActiveDate": "2026-01-01T00:00:00Z"},
    )
    # Then both answer 200 with no body and the echoed result type, and the simulator kept the reports
    assert (slot.status_code, slot.content) == (200, b"")
    assert slot.headers["x-amzn-type-version"] == PREFIX + "DrsSlotStatusResult@1.0"
    assert (active.status_code, active.content) == (200, b"")
    view = control(simulator.url, "GET", f"/devices/{device.serial}").json()
    assert view["slotReports"]["PaperTowel"]["remainingQuantityInUnit"] == 3.5
    assert view["lastDeviceStatus"]["mostRecentlyActiveDate"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "body",
    [
        {k: v for k, v in SLOT_REPORT.items() if k != "lastUseDate"},
        {**SLOT_REPORT, "remainingQuantity": 1},
        {**SLOT_REPORT, "lastUseDate": "yesterday"},
        {**SLOT_REPORT, "totalQuantityOnHand": -1},
        [SLOT_REPORT],
    ],
)
def test_slot_status_rejects_bodies_off_the_schema(simulator: SimulatorServer, body: Any) -> None:
    # Given a linked device
    device = link(simulator.url)
    # When it sends a slot report that is missing, adds or mangles a field
    answer = drs(simulator.url, "slotStatus", device.access_token, body=body)
    # Then it is a 400 not about the token
    assert answer.status_code == 400 and "token" not in answer.json()["message"].lower()


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (
            "DrsSubscriptionInfoResult@1.0",
            {"PaperTowel": True, "Soap": False},
        ),
        (
            "DrsSubscriptionInfoResult@2.0",
            {
                "PaperTowel": {"subscribed": True, "productInfoList": [PRODUCT]},
                "Soap": {"subscribed": False, "productInfoList": []},
            },
        ),
    ],
)
def test_subscription_info_answers_in_the_accepted_version(
    simulator: SimulatorServer, accept: str, expected: dict[str, Any]
) -> None:
    # Given a device with one picked and one empty slot
    device = link(simulator.url, slots={"PaperTowel": PRODUCT, "Soap": None})
    # When it asks for its subscriptions in v1 or v2
    answer = drs(simulator.url, "subscriptionInfo", device.access_token, accept=accept)
    # Then the shape follows the accepted version, which is echoed
    assert answer.json() == {"slotsSubscriptionStatus": expected}
    assert answer.headers["x-amzn-type-version"] == PREFIX + accept


def test_deregistration_revokes_every_token_and_notifies(simulator: SimulatorServer) -> None:
    # Given a linked device with a second access token from a refresh
    device = link(simulator.url)
    refreshed = token_call(
        simulator.url,
        grant_type="refresh_token",
        refresh_token=device.refresh_token,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    ).json()["access_token"]
    # When the backend deregisters it
    answer = drs(simulator.url, "deregistration", device.access_token)
    # Then it answers {} and every token of the device is refused afterwards
    assert (answer.status_code, answer.json()) == (200, {})
    assert answer.headers["x-amzn-type-version"] == PREFIX + "DrsDeregisterResult@1.0"
    for token in (device.access_token, refreshed):
        refused = drs(simulator.url, "subscriptionInfo", token)
        assert refused.status_code == 400 and refused.headers["x-amzn-ErrorType"] == "InvalidTokenException"
    assert types(simulator.url)[-1] == "DeviceDeregisteredNotification"


@pytest.mark.parametrize(("model", "serial", "status"), [("MODEL-1", "SN-1", 200), ("MODEL-1", "SN-2", 400)])
def test_legacy_deregistration_must_name_the_tokens_device(
    simulator: SimulatorServer, model: str, serial: str, status: int
) -> None:
    # Given a linked device SN-1 of MODEL-1
    device = link(simulator.url)
    # When the legacy path names a model and serial
    answer = drs(simulator.url, "legacyDeregistration", device.access_token, model=model, serial=serial)
    # Then only its own model and serial deregister it
    assert answer.status_code == status
    still_valid = drs(simulator.url, "subscriptionInfo", device.access_token).status_code == 200
    assert still_valid is (status == 400)


def test_get_order_info_shows_own_orders_only(simulator: SimulatorServer) -> None:
    # Given two devices, each with an order
    mine = link(simulator.url, serial="SN-1")
    other = link(simulator.url, serial="SN-2")
    my_order = place_order(simulator.url, mine)
    other_order = place_order(simulator.url, other)
    # When the first device asks about both orders
    own = drs(simulator.url, "getOrderInfo", mine.access_token, order=my_order)
    foreign = drs(simulator.url, "getOrderInfo", mine.access_token, order=other_order)
    # Then it sees its own, in the documented shape, and 404 for the other's
    assert own.json() == {
        "orderInfoData": {
            "instanceId": my_order,
            "orderItems": [
                {
                    "asin": "B00EXAMPLE",
                    "expectedDeliveryDate": "2026-01-04T00:00:00.000Z",
                    "quantity": 2,
                    "slotId": "PaperTowel",
                    "status": "Processing",
                }
            ],
        }
    }
    assert foreign.status_code == 404


def test_test_order_is_cancelled_by_cancel_test_order_which_unlocks_the_slot(
    simulator: SimulatorServer,
) -> None:
    # Given a simulated DRS set to notify test-order cancels, and a test device with a test order open
    control(simulator.url, "POST", "/notifications/config", {"testCancelNotifications": True})
    device = link(simulator.url, test_device=True)
    answer = drs(simulator.url, "replenish", device.access_token)
    assert answer.json()["detailCode"] == "TEST_ORDER_PLACED"
    # When the test order of that slot is cancelled
    cancelled = drs(simulator.url, "cancelTestOrder", device.access_token)
    # Then the slot reports no order, OrderCancelled names the order, and a new order can be placed
    assert cancelled.json() == {
        "slotOrderStatuses": [{"slotId": "PaperTowel", "orderStatus": "NO_ORDER_IN_PROGRESS"}]
    }
    last = messages(simulator.url)[-1]
    assert last["notificationInfo"]["notificationType"] == "OrderCancelledNotification"
    assert last["orderInfo"] == {"instanceId": answer.json()["eventInstanceId"], "slotId": "PaperTowel"}
    assert drs(simulator.url, "replenish", device.access_token).json()["detailCode"] == "TEST_ORDER_PLACED"


def test_cancel_all_test_orders_lists_every_slot(simulator: SimulatorServer) -> None:
    # Given a test device with orders on both slots
    device = link(simulator.url, test_device=True)
    place_order(simulator.url, device, "PaperTowel")
    place_order(simulator.url, device, "Soap")
    # When every test order is cancelled
    answer = drs(simulator.url, "cancelTestOrders", device.access_token)
    # Then both slots are free, and by default (no DRS source says it notifies) nothing was published
    assert sorted(entry["slotId"] for entry in answer.json()["slotOrderStatuses"]) == ["PaperTowel", "Soap"]
    assert types(simulator.url).count("OrderCancelledNotification") == 0
    # When the world is set to notify them, and both slots are ordered and cancelled again
    control(simulator.url, "POST", "/notifications/config", {"testCancelNotifications": True})
    place_order(simulator.url, device, "PaperTowel")
    place_order(simulator.url, device, "Soap")
    drs(simulator.url, "cancelTestOrders", device.access_token)
    # Then two cancellations were published
    assert types(simulator.url).count("OrderCancelledNotification") == 2


def test_cancel_test_orders_on_a_real_device_is_400(simulator: SimulatorServer) -> None:
    # Given a non-test device with an order
    device = link(simulator.url)
    place_order(simulator.url, device)
    # When it tries to cancel test orders
    answer = drs(simulator.url, "cancelTestOrders", device.access_token)
    # Then it is refused (not a token problem) and the order stays open
    assert answer.status_code == 400 and "token" not in answer.json()["message"].lower()
    assert drs(simulator.url, "replenish", device.access_token).json()["detailCode"] == "ORDER_INPROGRESS"


# ---------------------------------------------------------------------- orders: clock and /__sim/ actions
@pytest.mark.parametrize(("after", "status"), [(24 * 3600, 200), (24 * 3600 + 1, 409)])
def test_customer_may_cancel_only_within_24_hours(
    simulator: SimulatorServer, after: int, status: int
) -> None:
    # Given a placed order
    device = link(simulator.url)
    order = place_order(simulator.url, device)
    # When the customer cancels it `after` seconds later
    advance(simulator.url, after)
    answer = control(simulator.url, "POST", f"/orders/{order}/cancel")
    # Then only a cancel within 24 h goes through, and publishes OrderCancelled
    assert answer.status_code == status
    assert ("OrderCancelledNotification" in types(simulator.url)) is (status == 200)


def test_shipped_order_cannot_be_cancelled_and_ship_notifies(simulator: SimulatorServer) -> None:
    # Given a placed order
    device = link(simulator.url)
    order = place_order(simulator.url, device)
    # When Amazon ships it, then the customer tries to cancel and Amazon to ship again
    shipped = control(simulator.url, "POST", f"/orders/{order}/ship")
    cancel = control(simulator.url, "POST", f"/orders/{order}/cancel")
    again = control(simulator.url, "POST", f"/orders/{order}/ship")
    # Then ItemShipped went out once and the later actions conflict with the state
    assert shipped.status_code == 200 and shipped.json()["state"] == "SHIPPED"
    assert (cancel.status_code, again.status_code) == (409, 409)
    assert types(simulator.url).count("ItemShippedNotification") == 1


def test_order_issue_sends_the_order_into_resolution_until_resolved(simulator: SimulatorServer) -> None:
    # Given a customer with payment trouble whose device replenishes
    device = link(simulator.url, order_issue=True)
    answer = drs(simulator.url, "replenish", device.access_token)
    order = answer.json()["eventInstanceId"]
    pending = drs(simulator.url, "getOrderInfo", device.access_token, order=order).json()
    # When a day passes and the customer resolves the trouble
    advance(simulator.url, 24 * 3600)
    resolved = control(simulator.url, "POST", f"/orders/{order}/resolve")
    # Then replenish said placed, no OrderPlaced came before the resolution, and delivery counts from it
    assert answer.json()["detailCode"] == "STANDARD_ORDER_PLACED"
    assert pending["orderInfoData"]["orderItems"][0]["status"] == "Pending"
    assert resolved.status_code == 200
    placed = [
        m
        for m in messages(simulator.url)
        if m["notificationInfo"]["notificationType"] == "OrderPlacedNotification"
    ]
    assert len(placed) == 1
    assert placed[0]["notificationInfo"]["notificationTime"] == "2026-01-02T00:00:00.000Z"
    assert placed[0]["orderInfo"]["productInfo"][0]["estimatedDeliveryDate"] == "2026-01-05T00:00:00.000Z"


def test_unresolved_order_is_cancelled_after_72_hours(simulator: SimulatorServer) -> None:
    # Given a troubled order
    device = link(simulator.url, order_issue=True)
    order = place_order(simulator.url, device)
    # When 72 hours pass on the clock
    advance(simulator.url, 72 * 3600 - 1)
    before = types(simulator.url)
    advance(simulator.url, 1)
    # Then OrderCancelled is published at the deadline, the slot unlocks, and resolving is too late
    assert "OrderCancelledNotification" not in before
    cancelled = messages(simulator.url)[-1]
    assert cancelled["notificationInfo"]["notificationType"] == "OrderCancelledNotification"
    assert cancelled["orderInfo"]["instanceId"] == order
    assert control(simulator.url, "POST", f"/orders/{order}/resolve").status_code == 409
    assert (
        drs(simulator.url, "replenish", refreshed(simulator.url, device)).json()["detailCode"]
        == "STANDARD_ORDER_PLACED"
    )


def test_expire_action_ends_the_resolution_flow_at_once(simulator: SimulatorServer) -> None:
    # Given a troubled order
    device = link(simulator.url, order_issue=True)
    order = place_order(simulator.url, device)
    # When Amazon expires it
    answer = control(simulator.url, "POST", f"/orders/{order}/expire")
    # Then it is cancelled and published as such
    assert answer.status_code == 200 and answer.json()["state"] == "CANCELLED"
    assert types(simulator.url)[-1] == "OrderCancelledNotification"


def test_clock_delivers_real_orders_but_not_test_orders(simulator: SimulatorServer) -> None:
    # Given an order on a real device and one on a test device
    real = link(simulator.url, serial="SN-1")
    test = link(simulator.url, serial="SN-2", test_device=True)
    place_order(simulator.url, real)
    place_order(simulator.url, test)
    before = types(simulator.url)
    # When the estimated delivery date (3 days) passes
    advance(simulator.url, 3 * 24 * 3600)
    # Then the real slot is free again, the test slot stays locked, and no notification announced it
    assert types(simulator.url) == before
    real_again = drs(simulator.url, "replenish", refreshed(simulator.url, real))
    test_again = drs(simulator.url, "replenish", refreshed(simulator.url, test))
    assert real_again.json()["detailCode"] == "STANDARD_ORDER_PLACED"
    assert test_again.json()["detailCode"] == "ORDER_INPROGRESS"


def test_reregistration_replaces_the_previous_one_and_starts_without_orders(
    simulator: SimulatorServer,
) -> None:
    # Given a linked device with an open order
    first = link(simulator.url)
    place_order(simulator.url, first)
    before = len(messages(simulator.url))
    # When the same serial is linked again
    second = link(simulator.url)
    # Then the old registration is deregistered first, its tokens revoked, and the new one has no open order
    assert types(simulator.url)[before:] == [
        "DeviceDeregisteredNotification",
        "DeviceRegisteredNotification",
        "SubscriptionChangedNotification",
    ]
    assert drs(simulator.url, "replenish", first.access_token).status_code == 400
    assert (
        drs(simulator.url, "replenish", second.access_token).json()["detailCode"] == "STANDARD_ORDER_PLACED"
    )


def test_removing_the_maker_deregisters_all_of_the_customers_devices(simulator: SimulatorServer) -> None:
    # Given one customer with two devices
    customer = new_customer(simulator.url)
    one = link(simulator.url, serial="SN-1", customer=customer)
    two = link(simulator.url, serial="SN-2", customer=customer)
    # When the customer removes the maker in "Manage Login with Amazon"
    answer = control(simulator.url, "DELETE", f"/customers/{customer['customerId']}/lwa")
    # Then both devices are deregistered and their tokens refused
    assert sorted(answer.json()["deregisteredSerials"]) == ["SN-1", "SN-2"]
    assert types(simulator.url).count("DeviceDeregisteredNotification") == 2
    assert all(drs(simulator.url, "subscriptionInfo", d.access_token).status_code == 400 for d in (one, two))


def test_subscription_change_touches_named_slots_and_publishes_the_full_map(
    simulator: SimulatorServer,
) -> None:
    # Given a linked device with two picked slots
    device = link(simulator.url)
    # When the customer clears one slot, then names an unknown one
    answer = control(
        simulator.url, "PUT", f"/devices/{device.serial}/subscription", {"slots": {"Soap": None}}
    )
    unknown = control(simulator.url, "PUT", f"/devices/{device.serial}/subscription", {"slots": {"X": None}})
    # Then the notification carries both slots, only Soap changed, and the unknown slot is 404
    assert answer.status_code == 200 and unknown.status_code == 404
    assert messages(simulator.url)[-1]["subscriptionInfo"]["slotsSubscriptionStatus"] == {
        "PaperTowel": {"subscribed": True, "productInfoList": [PRODUCT]},
        "Soap": {"subscribed": False, "productInfoList": []},
    }


# ---------------------------------------------------------------------- notifications
def test_registration_publishes_v2_messages_in_an_sns_envelope(
    simulator: SimulatorServer, published: list[dict[str, Any]]
) -> None:
    # Given default notification settings
    # When a device is linked
    device = link(simulator.url)
    # Then Registered then SubscriptionChanged went out as SNS envelopes with the v2 attribute
    deliveries = control(simulator.url, "GET", "/notifications").json()["notifications"]
    envelopes = [entry["envelope"] for entry in deliveries]
    assert [entry["seq"] for entry in deliveries] == [1, 2]
    assert published == envelopes
    for envelope in envelopes:
        assert envelope["Type"] == "Notification"
        assert envelope["TopicArn"] == "arn:aws:sns:us-east-1:000000000000:drs-notifications"
        assert envelope["MessageAttributes"] == {"version": {"Type": "String", "Value": "2.0"}}
    registered, changed = (json.loads(envelope["Message"]) for envelope in envelopes)
    info = registered["notificationInfo"]
    assert info["notificationType"] == "DeviceRegisteredNotification"
    assert info["lwaClientId"] == CLIENT_ID and info["version"] == "2015-06-05"
    assert info["notificationId"].startswith("amzn1.dash.notification.v1.")
    assert registered["deviceInfo"] == {
        "deviceIdentifier": {"serialNumber": "SN-1"},
        "productIdentifier": {"modelId": "MODEL-1"},
    }
    assert registered["customerInfo"] == {"directedCustomerId": device.customer_id}
    assert changed["subscriptionInfo"]["slotsSubscriptionStatus"]["PaperTowel"]["productInfoList"] == [
        PRODUCT
    ]


def test_v1_messages_have_v1_shapes_and_no_version_attribute(simulator: SimulatorServer) -> None:
    # Given notifications switched to v1
    control(simulator.url, "POST", "/notifications/config", {"version": "1"})
    # When a device is linked and orders
    device = link(simulator.url)
    order = place_order(simulator.url, device)
    # Then the subscription map is boolean, orderInfo is v1, and there are no message attributes
    envelopes = [
        e["envelope"] for e in control(simulator.url, "GET", "/notifications").json()["notifications"]
    ]
    assert all("MessageAttributes" not in envelope for envelope in envelopes)
    _, changed, placed = (json.loads(envelope["Message"]) for envelope in envelopes)
    assert changed["subscriptionInfo"]["slotsSubscriptionStatus"] == {"PaperTowel": True, "Soap": True}
    assert placed["orderInfo"] == {
        "instanceId": order,
        "slotId": "PaperTowel",
        "productInfo": [{"quantity": 2, "unit": "count"}],
        "estimatedDeliveryDate": "2026-01-04T00:00:00.000Z",
    }


def test_duplicates_keep_their_message_id(
    simulator: SimulatorServer, published: list[dict[str, Any]]
) -> None:
    # Given every message duplicated
    control(simulator.url, "POST", "/notifications/config", {"duplicateRate": 1})
    # When a device is linked (two messages)
    link(simulator.url)
    # Then four deliveries went out, in pairs sharing a MessageId, to the log and the publisher alike
    ids = [
        e["envelope"]["MessageId"]
        for e in control(simulator.url, "GET", "/notifications").json()["notifications"]
    ]
    assert len(ids) == 4 and ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    assert [envelope["MessageId"] for envelope in published] == ids


def test_reordered_message_goes_out_after_the_next_one_or_at_the_clock_advance(
    simulator: SimulatorServer,
) -> None:
    # Given every eligible message held back
    control(simulator.url, "POST", "/notifications/config", {"reorderRate": 1})
    # When a device is linked (Registered, then SubscriptionChanged) and then orders
    device = link(simulator.url)
    linked_order = types(simulator.url)
    place_order(simulator.url, device)
    held = types(simulator.url)
    advance(simulator.url, 1)
    # Then SubscriptionChanged overtook Registered, and OrderPlaced waited for the clock
    assert linked_order == ["SubscriptionChangedNotification", "DeviceRegisteredNotification"]
    assert held == linked_order
    assert types(simulator.url)[-1] == "OrderPlacedNotification"


def test_delayed_messages_wait_for_the_clock(simulator: SimulatorServer) -> None:
    # Given a 60 s delivery delay
    control(simulator.url, "POST", "/notifications/config", {"delaySeconds": 60})
    # When a device is linked and the clock moves 59 s, then 1 s more
    link(simulator.url)
    advance(simulator.url, 59)
    early = types(simulator.url)
    advance(simulator.url, 1)
    # Then nothing arrived before the delay passed, then both in order, stamped with their event time
    assert early == []
    deliveries = control(simulator.url, "GET", "/notifications").json()["notifications"]
    assert [
        json.loads(d["envelope"]["Message"])["notificationInfo"]["notificationType"] for d in deliveries
    ] == [
        "DeviceRegisteredNotification",
        "SubscriptionChangedNotification",
    ]
    assert deliveries[0]["at"] == "2026-01-01T00:01:00.000Z"
    assert deliveries[0]["envelope"]["Timestamp"] == "2026-01-01T00:00:00.000Z"


def test_notification_config_changes_only_named_fields(simulator: SimulatorServer) -> None:
    # Given a config with duplicates on
    control(simulator.url, "POST", "/notifications/config", {"duplicateRate": 0.5, "seed": 7})
    # When only the version is changed
    answer = control(simulator.url, "POST", "/notifications/config", {"version": "1"})
    # Then the other fields are kept
    assert answer.json() == {
        "version": "1",
        "duplicateRate": 0.5,
        "reorderRate": 0,
        "delaySeconds": 0,
        "seed": 7,
        "testCancelNotifications": False,
    }


# ---------------------------------------------------------------------- faults
def test_fault_answers_its_status_records_it_and_changes_nothing(simulator: SimulatorServer) -> None:
    # Given a linked device and replenish failing every time with 503
    device = link(simulator.url)
    control(simulator.url, "POST", "/faults", {"endpoint": "replenish", "rate": 1, "status": 503})
    # When the device replenishes
    answer = drs(simulator.url, "replenish", device.access_token)
    # Then it gets 503 without token wording, the call is logged as a fault, and no order exists
    assert answer.status_code == 503 and "token" not in answer.json()["message"].lower()
    last = control(simulator.url, "GET", "/calls").json()["calls"][-1]
    assert (last["operation"], last["status"], last["fault"]) == ("replenish", 503, True)
    control(simulator.url, "POST", "/faults", {"endpoint": "replenish", "rate": 0})
    assert (
        drs(simulator.url, "replenish", device.access_token).json()["detailCode"] == "STANDARD_ORDER_PLACED"
    )


def fault_pattern(seed: int, calls: int = 24) -> list[int]:
    """The statuses of tokeninfo calls under a 50 % all-routes fault rule seeded with ``seed``."""
    with SimulatorServer(port=0) as server:
        control(server.url, "POST", "/faults", {"rate": 0.5, "status": 429, "seed": seed})
        return [
            requests.get(
                f"{server.url}/auth/o2/tokeninfo", params={"access_token": "x"}, timeout=5
            ).status_code
            for _ in range(calls)
        ]


def test_faults_are_seeded_and_repeat() -> None:
    # Given two simulators with the same fault seed, and one with another seed
    # When each gets the same sequence of calls
    first, second, other = fault_pattern(3), fault_pattern(3), fault_pattern(4)
    # Then the same seed picks the same calls, picks some but not all, and another seed differs
    assert first == second
    assert set(first) == {400, 429}
    assert other != first


def test_endpoint_rule_overrides_the_all_routes_rule_and_control_routes_are_never_faulted(
    simulator: SimulatorServer,
) -> None:
    # Given every route failing with 500, but tokeninfo explicitly healthy (a 200 rule)
    device = link(simulator.url)
    control(simulator.url, "POST", "/faults", {"rate": 1})
    control(simulator.url, "POST", "/faults", {"endpoint": "tokeninfo", "rate": 1, "status": 200})
    # When DRS, tokeninfo and a control route are called
    drs_answer = drs(simulator.url, "subscriptionInfo", device.access_token)
    info = requests.get(
        f"{simulator.url}/auth/o2/tokeninfo", params={"access_token": device.app_token}, timeout=5
    )
    control_answer = control(simulator.url, "GET", "/calls")
    # Then DRS fails, tokeninfo succeeds (logged as picked), and the control route is untouched
    assert drs_answer.status_code == 500
    assert info.status_code == 200
    assert control_answer.status_code == 200 and control_answer.json()["calls"][-1]["fault"] is True


def test_lwa_fault_uses_the_oauth_body(simulator: SimulatorServer) -> None:
    # Given the token endpoint failing with 500
    customer = new_customer(simulator.url)
    code = authorize(simulator.url, customer["customerId"])
    control(simulator.url, "POST", "/faults", {"endpoint": "token", "rate": 1})
    # When the backend exchanges a code
    answer = exchange(simulator.url, code)
    # Then the failure is OAuth-shaped, and the code was not consumed
    assert answer.status_code == 500 and answer.json()["error"] == "server_error"
    control(simulator.url, "POST", "/faults", {"endpoint": "token", "rate": 0})
    assert exchange(simulator.url, code).status_code == 200


def test_latency_fault_delays_a_successful_answer(simulator: SimulatorServer) -> None:
    # Given subscriptionInfo slowed by 150 ms of wall-clock time
    device = link(simulator.url)
    control(
        simulator.url,
        "POST",
        "/faults",
        {"endpoint": "subscriptionInfo", "rate": 1, "status": 200, "latencyMs": 150},
    )
    # When it is called
    started = time.monotonic()
    answer = drs(simulator.url, "subscriptionInfo", device.access_token)
    # Then it succeeds, but only after the latency
    assert answer.status_code == 200
    assert time.monotonic() - started >= 0.15


# ---------------------------------------------------------------------- calls log, settings, control routes
def test_calls_log_records_calls_in_order_without_secrets(simulator: SimulatorServer) -> None:
    # Given a linked device that replenished and asked tokeninfo
    device = link(simulator.url)
    place_order(simulator.url, device)
    requests.get(
        f"{simulator.url}/auth/o2/tokeninfo", params={"access_token": device.access_token}, timeout=5
    )
    # When the calls log is read
    calls = control(simulator.url, "GET", "/calls").json()["calls"]
    # Then it lists token, replenish, tokeninfo with their details, and no token, code or secret anywhere
    assert [(c["seq"], c["operation"], c["status"]) for c in calls] == [
        (1, "token", 200),
        (2, "replenish", 200),
        (3, "tokeninfo", 200),
    ]
    assert calls[1]["serial"] == "SN-1" and calls[1]["slotId"] == "PaperTowel"
    assert calls[1]["detailCode"] == "STANDARD_ORDER_PLACED" and calls[1]["at"] == "2026-01-01T00:00:00.000Z"
    text = json.dumps(calls)
    for secret in (device.access_token, device.refresh_token, CLIENT_SECRET, "Atza|", "Atzr|"):
        assert secret not in text


@pytest.mark.parametrize(
    ("exit_uri", "valid_token", "status"),
    [("myapp://done", True, 200), ("done", True, 400), ("myapp://done", False, 400)],
)
def test_settings_page_needs_a_valid_token_and_an_exit_uri_with_a_scheme(
    simulator: SimulatorServer, exit_uri: str, valid_token: bool, status: int
) -> None:
    # Given a linked device
    device = link(simulator.url)
    token = device.access_token if valid_token else "Atza|made-up"
    # When the settings page is opened
    answer = requests.get(
        f"{simulator.url}/settings", params={"access_token": token, "exitUri": exit_uri}, timeout=5
    )
    # Then it renders only for a valid token and an absolute exit URI
    assert answer.status_code == status
    assert answer.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        (
            "POST",
            "/authorize",
            {"customerId": "amzn1.account.NOPE", "modelId": "M", "serial": "S", "slots": SLOTS},
            404,
        ),
        (
            "POST",
            "/authorize",
            {"customerId": "x", "modelId": "M", "serial": "bad serial!", "slots": SLOTS},
            400,
        ),
        ("POST", "/clock", {"advanceSeconds": -1}, 400),
        ("POST", "/faults", {"endpoint": "nope", "rate": 1}, 400),
        ("POST", "/faults", {"rate": 1, "status": 418}, 400),
        ("POST", "/notifications/config", {"version": "3"}, 400),
        ("POST", "/customers", {"colour": "blue"}, 400),
        ("POST", "/orders/amzn1.dash.v2.o.unknown/ship", None, 404),
        ("DELETE", "/devices/SN-404", None, 404),
        ("PATCH", "/customers/amzn1.account.NOPE", {"orderIssue": True}, 404),
    ],
)
def test_control_routes_reject_bad_bodies_and_unknown_things(
    simulator: SimulatorServer, method: str, path: str, body: Any, status: int
) -> None:
    # Given a fresh simulator
    # When a control route gets a bad body or names something unknown
    answer = control(simulator.url, method, path, body)
    # Then it answers 400 or 404 with a message
    assert answer.status_code == status and answer.json()["message"]


def test_clock_route_moves_the_shared_clock(simulator: SimulatorServer) -> None:
    # Given the simulator's clock at its start
    # When a day is advanced (and 0 just reads)
    now = advance(simulator.url, 86400)
    read = advance(simulator.url, 0)
    # Then the route and the in-process clock agree
    assert now == read == "2026-01-02T00:00:00.000Z"
    assert simulator.simulator.clock.now() == parse_iso(now)


def test_shared_clock_moved_directly_fires_due_events_on_the_next_call() -> None:
    # Given a simulator sharing its clock with the backend, and a troubled order
    clock = ManualClock()
    with SimulatorServer(port=0, clock=clock) as server:
        device = link(server.url, order_issue=True)
        order = place_order(server.url, device)
        # When the backend moves the shared clock past the 72 h window itself
        clock.advance(72 * 3600)
        # Then the next look at the simulator shows the expiry, stamped at the deadline
        cancelled = messages(server.url)[-1]
        assert cancelled["notificationInfo"]["notificationType"] == "OrderCancelledNotification"
        assert cancelled["orderInfo"]["instanceId"] == order
        assert cancelled["notificationInfo"]["notificationTime"] == "2026-01-04T00:00:00.000Z"


def test_concurrent_replenish_places_exactly_one_order(simulator: SimulatorServer) -> None:
    # Given a linked device
    device = link(simulator.url)
    # When eight replenish calls for the same slot race each other
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(lambda _: drs(simulator.url, "replenish", device.access_token).json(), range(8))
        )
    # Then one order was placed and every other call adopted it
    codes = sorted(answer["detailCode"] for answer in answers)
    assert codes == ["ORDER_INPROGRESS"] * 7 + ["STANDARD_ORDER_PLACED"]
    assert len({answer["eventInstanceId"] for answer in answers}) == 1


def test_publisher_may_call_back_into_the_simulator() -> None:
    # Given a publisher that, like a synchronous backend, calls DRS while handling each notification
    seen: list[int] = []

    class CallingBack:
        def publish(self, envelope: dict[str, Any]) -> None:
            message = json.loads(envelope["Message"])
            # Only once the device is linked (the first SubscriptionChanged comes with the exchange).
            if (
                tokens
                and message["notificationInfo"]["notificationType"] == "SubscriptionChangedNotification"
            ):
                seen.append(drs(server.url, "subscriptionInfo", tokens["access_token"]).status_code)

    tokens: dict[str, str] = {}
    with SimulatorServer(port=0, publisher=CallingBack()) as server:
        customer = new_customer(server.url)
        # When a device is linked, then its subscription changes
        tokens.update(exchange(server.url, authorize(server.url, customer["customerId"])).json())
        answer = control(server.url, "PUT", "/devices/SN-1/subscription", {"slots": {"Soap": None}})
        # Then nothing deadlocks and the publisher's own DRS call succeeded
        assert answer.status_code == 200
        assert seen == [200]


def test_notify_url_receives_every_envelope() -> None:
    # Given a receiver on loopback and a simulator told to POST notifications to it
    received: list[dict[str, Any]] = []

    @Request.application
    def receiver(request: Request) -> Response:
        received.append(json.loads(request.get_data()))
        return Response("", 204)

    listener = make_server("127.0.0.1", 0, receiver, threaded=True)
    thread = threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with SimulatorServer(port=0, notify_url=f"http://127.0.0.1:{listener.server_port}/sns") as server:
            # When a device is linked
            link(server.url)
            recorded = [entry["envelope"] for entry in messages_raw(server.url)]
    finally:
        listener.shutdown()
        listener.server_close()
    # Then the receiver got the same envelopes, in order
    assert received == recorded and len(received) == 2


def messages_raw(base: str) -> list[dict[str, Any]]:
    return control(base, "GET", "/notifications").json()["notifications"]


def test_latency_longer_than_the_client_waits_is_a_timeout(simulator: SimulatorServer) -> None:
    # Given tokeninfo slowed by 800 ms
    control(
        simulator.url,
        "POST",
        "/faults",
        {"endpoint": "tokeninfo", "rate": 1, "status": 200, "latencyMs": 800},
    )
    # When a client waits only 200 ms
    # Then it times out
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{simulator.url}/auth/o2/tokeninfo", params={"access_token": "x"}, timeout=0.2)


def delivery_pattern(seed: int) -> list[tuple[str, str, str]]:
    """(serial, type, MessageId) of every delivery when three devices link under 50 % duplicates and
    reordering (MessageIds are random, so they are replaced by their order of first appearance)."""
    with SimulatorServer(port=0) as server:
        config = {"duplicateRate": 0.5, "reorderRate": 0.5, "seed": seed}
        control(server.url, "POST", "/notifications/config", config)
        for serial in ("SN-1", "SN-2", "SN-3"):
            link(server.url, serial=serial)
        advance(server.url, 1)
        ordinals: dict[str, int] = {}
        pattern = []
        for entry in messages_raw(server.url):
            message = json.loads(entry["envelope"]["Message"])
            ordinal = ordinals.setdefault(entry["envelope"]["MessageId"], len(ordinals))
            serial = message["deviceInfo"]["deviceIdentifier"]["serialNumber"]
            pattern.append((serial, message["notificationInfo"]["notificationType"], str(ordinal)))
        return pattern


def test_notification_delivery_is_seeded_and_repeats() -> None:
    # Given two simulators with the same notification seed
    # When the same events happen in each
    first, second = delivery_pattern(1), delivery_pattern(1)
    # Then duplicates and reordering fall on the same messages, and some of each happened
    assert first == second
    distinct = list(dict.fromkeys(first))
    assert len(first) > len(distinct)  # a duplicate, with its MessageId
    emitted = [
        (serial, kind)
        for serial in ("SN-1", "SN-2", "SN-3")
        for kind in ("DeviceRegisteredNotification", "SubscriptionChangedNotification")
    ]
    assert sorted(emitted) == sorted((serial, kind) for serial, kind, _ in distinct)  # nothing lost
    assert [(serial, kind) for serial, kind, _ in distinct] != emitted  # a reordering
