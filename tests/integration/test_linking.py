"""Linking, unlinking and the companion app's routes, end to end through the handlers.

Real-shaped HTTP API v2 events go through the companion authorizer and the companion function (as API
Gateway wires them, ``tests/support/gateway.py``); AWS is moto, DRS and LWA are the simulator on
loopback, sharing the test's clock.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from drs_core import dependencies
from drs_core.adapters.device_registry import REGISTRY_SK
from drs_core.clock import ManualClock, to_iso
from drs_core.domain.models import Device
from tests.conftest import SIM_CLIENT_SECRET, AwsEnv
from tests.support import api_fixtures, logs
from tests.support.api_fixtures import (
    DEVICE,
    DEVICES,
    OPENAPI,
    POLICY,
    REGISTRATION,
    SETTINGS_LINK,
    SLOT_TEST_ORDER,
    TEST_ORDERS,
    Api,
    concrete,
    new_serial,
)

api = api_fixtures.api
simulator = api_fixtures.simulator
captured_logs = logs.captured_logs


def scan(aws: AwsEnv, table: str) -> list[dict[str, Any]]:
    return aws.dynamodb.scan(TableName=table)["Items"]


def assert_nothing_stored(aws: AwsEnv) -> None:
    """No device, slot or token item (the registry's entries of provisioned devices aside)."""
    assert [item for item in scan(aws, aws.state_table) if item["sk"]["S"] != REGISTRY_SK] == []
    assert scan(aws, aws.tokens_table) == []


def stored_refresh_token(aws: AwsEnv, serial: str) -> str:
    item = aws.dynamodb.get_item(TableName=aws.tokens_table, Key={"serial": {"S": serial}})["Item"]
    plain = aws.kms.decrypt(CiphertextBlob=item["refreshTokenCt"]["B"], EncryptionContext={"serial": serial})
    return plain["Plaintext"].decode()


# --- linking -----------------------------------------------------------------------------------------


def test_web_linking_creates_the_device_its_slots_and_a_credential_stored_only_as_a_hash(
    api: Api, aws: AwsEnv
) -> None:
    # Given a customer who consented to link a device in the browser
    customer = api.customer()
    serial = new_serial()
    code = api.consent(customer, serial)

    # When the app posts the code
    answer = api.register(customer, serial, code)

    # Then the device is linked with the slots subscriptionInfo reported
    assert answer.status == 201
    device = answer.body["device"]
    assert device["serial"] == serial and device["modelId"] == "WaterFilterPro"
    assert device["status"] == "LINKED" and device["isTestDevice"] is True
    assert {slot["slotId"]: slot["asin"] for slot in device["slots"]} == {
        "Cleaner": "B00CLEAN01",
        "Filter": "B00FILTER1",
    }
    filter_slot = next(slot for slot in device["slots"] if slot["slotId"] == "Filter")
    assert filter_slot["originalQuantity"] == 2 and filter_slot["order"] == {"state": "NONE"}
    # And the credential has at least 256 bits and is stored only as its SHA-256
    token = answer.body["deviceToken"]
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) >= 32
    items = json.dumps(scan(aws, aws.state_table) + scan(aws, aws.tokens_table), default=str)
    assert token not in items
    assert hashlib.sha256(token.encode()).hexdigest() in items
    # And the LWA tokens are stored encrypted under the serial
    assert stored_refresh_token(aws, serial).startswith("Atzr|")
    assert "Atzr|" not in items and "Atza|" not in items
    # And the web exchange was the one LWA saw (one token call, then subscriptionInfo)
    operations = [call["operation"] for call in api.sim.calls() if call.get("serial") == serial]
    assert operations == ["token", "subscriptionInfo"]


def test_linking_takes_each_slots_unit_and_full_quantity_from_the_model_catalog(api: Api) -> None:
    # Given a customer who picked packs on Amazon: one filter ("1 count") and a 1-litre bottle
    customer = api.customer()
    serial = new_serial()
    packs = {
        "Filter": {"asin": "B00FILTER1", "quantity": 1, "unit": "count"},
        "Cleaner": {"asin": "B00CLEAN01", "quantity": 1000, "unit": "milliliter"},
    }
    code = api.consent(customer, serial, slots=packs)

    # When the app links the device
    answer = api.register(customer, serial, code)

    # Then each slot's unit and full quantity are the catalog's for WaterFilterPro, not productInfo's
    assert answer.status == 201
    slots = {slot["slotId"]: slot for slot in answer.body["device"]["slots"]}
    assert (slots["Filter"]["originalQuantity"], slots["Filter"]["unit"]) == (2, "count")
    assert (slots["Cleaner"]["originalQuantity"], slots["Cleaner"]["unit"]) == (1.5, "liter")


def test_pkce_linking_uses_the_code_verifier(api: Api) -> None:
    # Given a consent made with a PKCE challenge (the mobile SDK)
    customer = api.customer()
    serial = new_serial()
    verifier = secrets.token_urlsafe(48)
    code = api.consent(customer, serial, verifier=verifier)

    # When the app posts a different verifier, LWA refuses; with the right one the device links
    wrong = api.register(customer, serial, code, verifier=secrets.token_urlsafe(48))
    code = api.consent(customer, serial, verifier=verifier)
    right = api.register(customer, serial, code, verifier=verifier)

    # Then
    assert (wrong.status, wrong.error_code) == (400, "INVALID_AUTHORIZATION_CODE")
    assert right.status == 201 and right.body["device"]["status"] == "LINKED"
    read = api.request("GET", DEVICE, concrete(DEVICE, serial), authorization=customer.bearer)
    assert read.status == 200 and len(read.body["slots"]) == 2


def test_relinking_rotates_the_credential_and_the_tokens(api: Api, aws: AwsEnv) -> None:
    # Given a linked device
    first = api.link()
    old_refresh = stored_refresh_token(aws, first.serial)

    # When the same customer links it again
    second = api.link(first.owner, first.serial)

    # Then a new credential replaces the old one: the device authorizer refuses the old one
    assert second.device_token != first.device_token
    assert api.device_authorizer(first.serial, f"Device {first.device_token}")["isAuthorized"] is False
    allowed = api.device_authorizer(first.serial, f"Device {second.device_token}")
    assert allowed["isAuthorized"] is True and allowed["context"]["serial"] == first.serial
    # And the vault holds the new registration's tokens (the old ones were revoked by LWA)
    assert stored_refresh_token(aws, first.serial) != old_refresh
    link = api.request(
        "GET",
        SETTINGS_LINK,
        concrete(SETTINGS_LINK, first.serial),
        authorization=first.owner.bearer,
        query={"exitUri": "myapp://done"},
    )
    assert link.status == 200


def test_invalid_code_answers_400_and_stores_nothing(api: Api, aws: AwsEnv) -> None:
    # Given a code LWA never issued
    customer = api.customer()

    # When the app posts it
    answer = api.register(customer, new_serial(), "ANnotARealCodeAtAll1")

    # Then 400 INVALID_AUTHORIZATION_CODE, and neither table holds anything
    assert (answer.status, answer.error_code) == (400, "INVALID_AUTHORIZATION_CODE")
    assert "authorization code" in answer.body["error"]["message"]
    assert_nothing_stored(aws)


def test_a_malformed_code_answers_400_not_502_and_stores_nothing(api: Api, aws: AwsEnv) -> None:
    # Given a code that is not shaped like one: LWA answers 400 invalid_request (not invalid_grant)
    customer = api.customer()

    # When the app posts it
    answer = api.register(customer, new_serial(), "not a code!")

    # Then it is the app's bad code (400 INVALID_AUTHORIZATION_CODE), not a 502, and nothing is stored
    assert (answer.status, answer.error_code) == (400, "INVALID_AUTHORIZATION_CODE")
    assert_nothing_stored(aws)


def test_a_reused_code_is_refused_without_touching_the_linked_device(api: Api, aws: AwsEnv) -> None:
    # Given a device linked with a code
    customer = api.customer()
    serial = new_serial()
    code = api.consent(customer, serial)
    assert api.register(customer, serial, code).status == 201
    before = scan(aws, aws.state_table)

    # When the same code is posted again
    again = api.register(customer, serial, code)

    # Then LWA's invalid_grant becomes 400 and the state is unchanged
    assert (again.status, again.error_code) == (400, "INVALID_AUTHORIZATION_CODE")
    assert scan(aws, aws.state_table) == before


def test_a_serial_linked_by_another_customer_answers_409_before_the_code_is_spent(api: Api) -> None:
    # Given a device linked by one customer, and another customer's consent for the same serial
    owner = api.link()
    intruder = api.customer()
    code = api.consent(intruder, owner.serial)
    token_calls = len(api.sim.calls("token"))

    # When the other customer's app posts the code
    answer = api.register(intruder, owner.serial, code)

    # Then 409, the code was not exchanged, and the device is still the first customer's
    assert (answer.status, answer.error_code) == (409, "DEVICE_ALREADY_LINKED")
    assert len(api.sim.calls("token")) == token_calls
    read = api.request("GET", DEVICE, concrete(DEVICE, owner.serial), authorization=owner.owner.bearer)
    assert read.status == 200 and read.body["status"] == "LINKED"


def test_device_registered_notification_arriving_first_does_not_break_linking(api: Api) -> None:
    # Given the device item written by a DeviceRegisteredNotification, before the app posts its code
    customer = api.customer()
    serial = new_serial()
    code = api.consent(customer, serial)
    dependencies.repository().put_device(Device(serial=serial, model_id="WaterFilterPro"))

    # When the app posts the code
    answer = api.register(customer, serial, code)

    # Then the link succeeds and the device is this customer's
    assert answer.status == 201
    listed = api.request("GET", DEVICES, authorization=customer.bearer)
    assert [device["serial"] for device in listed.body["devices"]] == [serial]


def test_a_deregistered_device_may_be_linked_by_a_new_customer(api: Api) -> None:
    # Given a device its first customer unlinked
    first = api.link()
    unlinked = api.request(
        "DELETE", REGISTRATION, concrete(REGISTRATION, first.serial), authorization=first.owner.bearer
    )
    assert unlinked.status == 204

    # When another customer links it
    second = api.link(serial=first.serial)

    # Then it is theirs now, and gone from the first customer's view
    assert second.answer.body["device"]["status"] == "LINKED"
    gone = api.request("GET", DEVICE, concrete(DEVICE, first.serial), authorization=first.owner.bearer)
    assert (gone.status, gone.error_code) == (404, "DEVICE_NOT_FOUND")


def test_lwa_unavailable_answers_503_and_stores_nothing(api: Api, aws: AwsEnv) -> None:
    # Given LWA's token endpoint failing
    customer = api.customer()
    serial = new_serial()
    code = api.consent(customer, serial)
    api.sim.set_fault("token", 1.0, status=503)

    # When the app posts the code
    answer = api.register(customer, serial, code)

    # Then 503 UPSTREAM_UNAVAILABLE, nothing stored
    assert (answer.status, answer.error_code) == (503, "UPSTREAM_UNAVAILABLE")
    assert_nothing_stored(aws)


# --- request validation ------------------------------------------------------------------------------


def _registration_body(**extra: Any) -> dict[str, Any]:
    body = {"modelId": "WaterFilterPro", "authorizationCode": "ANcode", "redirectUri": "https://x/cb"}
    body.update(extra)
    return body


INVALID_REGISTRATIONS: list[tuple[dict[str, Any], str]] = [
    (_registration_body(color="blue"), "body.color"),  # unknown field
    (_registration_body(modelId="Water Filter"), "body.modelId"),
    (_registration_body(modelId="M" * 65), "body.modelId"),
    (_registration_body(isTestDevice="true"), "body.isTestDevice"),  # no type coercion
    (_registration_body(codeVerifier="short"), "body.codeVerifier"),
    ({"modelId": "WaterFilterPro", "redirectUri": "https://x/cb"}, "body.authorizationCode"),
]


def test_invalid_registration_bodies_answer_400_and_store_nothing(api: Api, aws: AwsEnv) -> None:
    # Given a customer
    customer = api.customer()

    # When the app posts bodies the contract does not allow
    answers = [
        api.request(
            "POST",
            REGISTRATION,
            concrete(REGISTRATION, new_serial()),
            authorization=customer.bearer,
            body=body,
        )
        for body, _ in INVALID_REGISTRATIONS
    ]

    # Then each is 400 naming the field, LWA was never called, nothing is stored
    for answer, (_, location) in zip(answers, INVALID_REGISTRATIONS, strict=True):
        assert (answer.status, answer.error_code) == (400, "INVALID_REQUEST"), location
        assert location in answer.body["error"]["message"]
    assert api.sim.calls("token") == []
    assert_nothing_stored(aws)


def test_invalid_serials_in_the_path_answer_400(api: Api) -> None:
    # Given a customer
    customer = api.customer()

    # When paths carry serials DRS would not accept
    answers = [
        api.request("GET", DEVICE, f"/v1/devices/{serial}", authorization=customer.bearer)
        for serial in ("S" * 65, "bad.serial", "with space")
    ]

    # Then each is 400 before any lookup
    assert [(a.status, a.error_code) for a in answers] == [(400, "INVALID_REQUEST")] * 3


def test_bodies_over_64_kib_answer_413_and_store_nothing(api: Api, aws: AwsEnv) -> None:
    # Given a body just over the limit, and one just under it
    customer = api.customer()
    padding = 64 * 1024 - len(json.dumps(_registration_body(authorizationCode="")))
    over = json.dumps(_registration_body(authorizationCode="A" * (padding + 1)))
    under = json.dumps(_registration_body(authorizationCode="A" * (padding - 1)))

    # When the app posts them, as text and base64-encoded
    def post(body: str, base64_body: bool) -> Any:
        path = concrete(REGISTRATION, new_serial())
        return api.request(
            "POST", REGISTRATION, path, authorization=customer.bearer, raw_body=body, base64_body=base64_body
        )

    answers = [post(over, False), post(over, True), post(under, False)]

    # Then over the limit is 413 PAYLOAD_TOO_LARGE; under it reaches validation (the code is too long)
    assert [(a.status, a.error_code) for a in answers] == [
        (413, "PAYLOAD_TOO_LARGE"),
        (413, "PAYLOAD_TOO_LARGE"),
        (400, "INVALID_REQUEST"),
    ]
    assert_nothing_stored(aws)


def test_malformed_json_answers_400(api: Api, aws: AwsEnv) -> None:
    # Given a customer
    customer = api.customer()

    # When the body is not JSON
    answer = api.request(
        "POST",
        REGISTRATION,
        concrete(REGISTRATION, new_serial()),
        authorization=customer.bearer,
        raw_body='{"modelId": ',
    )

    # Then 400 with the error shape and no stack trace
    assert (answer.status, answer.error_code) == (400, "INVALID_REQUEST")
    assert "Traceback" not in json.dumps(answer.body)
    assert_nothing_stored(aws)


# --- unlinking ---------------------------------------------------------------------------------------


def test_unlinking_deregisters_at_drs_destroys_tokens_and_marks_the_device(api: Api, aws: AwsEnv) -> None:
    # Given a linked device
    linked = api.link()

    # When the app deletes the registration
    answer = api.request(
        "DELETE", REGISTRATION, concrete(REGISTRATION, linked.serial), authorization=linked.owner.bearer
    )

    # Then 204, DRS got the deregistration, the tokens are gone and the device is DEREGISTERED
    assert answer.status == 204 and answer.body is None
    deregistrations = api.sim.calls("deregistration")
    assert [(call["serial"], call["status"]) for call in deregistrations] == [(linked.serial, 200)]
    assert api.sim.device(linked.serial)["registered"] is False
    assert scan(aws, aws.tokens_table) == []
    read = api.request("GET", DEVICE, concrete(DEVICE, linked.serial), authorization=linked.owner.bearer)
    assert read.body["status"] == "DEREGISTERED"
    # And the device credential no longer opens device routes
    assert api.device_authorizer(linked.serial, f"Device {linked.device_token}")["isAuthorized"] is False
    # And deleting again is harmless
    again = api.request(
        "DELETE", REGISTRATION, concrete(REGISTRATION, linked.serial), authorization=linked.owner.bearer
    )
    assert again.status == 204 and len(api.sim.calls("deregistration")) == 1


def test_unlinking_finishes_locally_when_drs_already_revoked_the_tokens(api: Api, aws: AwsEnv) -> None:
    # Given a device the customer already deregistered on Amazon's side
    linked = api.link()
    api.sim.deregister_device(linked.serial)

    # When the app deletes the registration
    answer = api.request(
        "DELETE", REGISTRATION, concrete(REGISTRATION, linked.serial), authorization=linked.owner.bearer
    )

    # Then it still succeeds locally
    assert answer.status == 204
    assert scan(aws, aws.tokens_table) == []
    read = api.request("GET", DEVICE, concrete(DEVICE, linked.serial), authorization=linked.owner.bearer)
    assert read.body["status"] == "DEREGISTERED"


# --- reads, ownership, settings, policy, test orders -------------------------------------------------


def test_another_customer_sees_404_for_every_device_route(api: Api) -> None:
    # Given a device linked by one customer, and another customer
    linked = api.link()
    other = api.customer()

    # When the other customer reads or changes it
    answers = {
        "get": api.request("GET", DEVICE, concrete(DEVICE, linked.serial), authorization=other.bearer),
        "settings": api.request(
            "GET",
            SETTINGS_LINK,
            concrete(SETTINGS_LINK, linked.serial),
            authorization=other.bearer,
            query={"exitUri": "myapp://x"},
        ),
        "policy": api.request(
            "PUT",
            POLICY,
            concrete(POLICY, linked.serial),
            authorization=other.bearer,
            body={"autoReorder": False},
        ),
        "unlink": api.request(
            "DELETE", REGISTRATION, concrete(REGISTRATION, linked.serial), authorization=other.bearer
        ),
        "test-orders": api.request(
            "DELETE", TEST_ORDERS, concrete(TEST_ORDERS, linked.serial), authorization=other.bearer
        ),
    }
    listed = api.request("GET", DEVICES, authorization=other.bearer)

    # Then every one is 404 DEVICE_NOT_FOUND, the list is empty, and DRS was not called
    assert {name: (a.status, a.error_code) for name, a in answers.items()} == {
        name: (404, "DEVICE_NOT_FOUND") for name in answers
    }
    assert listed.status == 200 and listed.body == {"devices": []}
    assert api.sim.calls("deregistration") == [] and api.sim.calls("cancelTestOrders") == []


def test_device_list_shows_only_the_customers_own_devices(api: Api) -> None:
    # Given two devices of one customer and one of another
    customer = api.customer()
    first, second = api.link(customer), api.link(customer)
    api.link()

    # When the customer lists devices
    answer = api.request("GET", DEVICES, authorization=customer.bearer)

    # Then exactly theirs, by serial
    assert answer.status == 200
    assert [device["serial"] for device in answer.body["devices"]] == sorted([first.serial, second.serial])


def test_device_read_computes_the_forecast_at_read_time(api: Api, aws: AwsEnv, clock: ManualClock) -> None:
    # Given a slot with 10 units left and an estimated use of 2 a day, and a lead time of 1 day
    linked = api.link()
    aws.dynamodb.update_item(
        TableName=aws.state_table,
        Key={"pk": {"S": f"DEVICE#{linked.serial}"}, "sk": {"S": "SLOT#Filter"}},
        UpdateExpression="SET remainingQuantity = :r, dailyConsumption = :d",
        ExpressionAttributeValues={":r": {"N": "10"}, ":d": {"N": "2"}},
    )
    policy = api.request(
        "PUT",
        POLICY,
        concrete(POLICY, linked.serial),
        authorization=linked.owner.bearer,
        body={"leadTimeDays": 1},
    )
    assert policy.status == 200 and policy.body["policy"]["leadTimeDays"] == 1

    # When the app reads the device
    answer = api.request("GET", DEVICE, concrete(DEVICE, linked.serial), authorization=linked.owner.bearer)

    # Then run-out is in 5 days, and the order when stock reaches the reorder point: 2 a day over the
    # 1-day lead time and the 2 safety days is 6, reached in 2 days
    slot = next(slot for slot in answer.body["slots"] if slot["slotId"] == "Filter")
    now = clock.now()
    assert slot["dailyConsumption"] == 2
    assert slot["expectedRunOutDate"] == to_iso(now + timedelta(days=5))
    assert slot["expectedReplenishmentDate"] == to_iso(now + timedelta(days=2))
    # And a slot without measured use has no forecast fields at all
    cleaner = next(slot for slot in answer.body["slots"] if slot["slotId"] == "Cleaner")
    assert "expectedRunOutDate" not in cleaner and "dailyConsumption" not in cleaner


def test_settings_link_carries_a_fresh_access_token_the_settings_page_accepts(api: Api) -> None:
    # Given a linked device
    linked = api.link()
    refreshes_before = len(api.sim.calls("token"))

    # When the app asks for the settings link
    answer = api.request(
        "GET",
        SETTINGS_LINK,
        concrete(SETTINGS_LINK, linked.serial),
        authorization=linked.owner.bearer,
        query={"exitUri": "myapp://settings-done"},
    )

    # Then the URL points at drs-web's settings page with a freshly refreshed token and the exit URI
    assert answer.status == 200
    url = answer.body["url"]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{api.server.url.rstrip('/')}/settings"
    query = parse_qs(parts.query)
    assert query["exitUri"] == ["myapp://settings-done"] and query["access_token"][0].startswith("Atza|")
    assert len(api.sim.calls("token")) == refreshes_before + 1
    # And the settings page opens with it
    assert requests.get(url, timeout=5).status_code == 200


def test_settings_link_needs_an_exit_uri_with_a_scheme(api: Api) -> None:
    # Given a linked device
    linked = api.link()
    token_calls = len(api.sim.calls("token"))

    # When exit URIs have no scheme
    answers = [
        api.request(
            "GET",
            SETTINGS_LINK,
            concrete(SETTINGS_LINK, linked.serial),
            authorization=linked.owner.bearer,
            query={"exitUri": exit_uri},
        )
        for exit_uri in ("settings-done", "/relative/path", "://nothing", "1app://x")
    ]

    # Then each is 400 INVALID_EXIT_URI and no token was refreshed for them
    assert [(a.status, a.error_code) for a in answers] == [(400, "INVALID_EXIT_URI")] * 4
    assert len(api.sim.calls("token")) == token_calls


def test_a_revoked_refresh_token_turns_the_device_reauth_required(api: Api) -> None:
    # Given a linked device whose customer removed the maker in "Manage Login with Amazon"
    linked = api.link()
    api.sim.remove_maker(linked.owner.customer_id)

    # When the app asks for the settings link (a refresh LWA refuses with invalid_grant)
    answer = api.request(
        "GET",
        SETTINGS_LINK,
        concrete(SETTINGS_LINK, linked.serial),
        authorization=linked.owner.bearer,
        query={"exitUri": "myapp://x"},
    )

    # Then 409 REAUTH_REQUIRED, and the device shows it
    assert (answer.status, answer.error_code) == (409, "REAUTH_REQUIRED")
    read = api.request("GET", DEVICE, concrete(DEVICE, linked.serial), authorization=linked.owner.bearer)
    assert read.body["status"] == "REAUTH_REQUIRED"


def test_policy_update_changes_only_the_named_fields(api: Api) -> None:
    # Given a linked device
    linked = api.link()
    path = concrete(POLICY, linked.serial, "Cleaner")

    # When the app changes the threshold and switches automatic reorders off
    answer = api.request(
        "PUT",
        POLICY,
        path,
        authorization=linked.owner.bearer,
        body={"thresholdFraction": 0.35, "autoReorder": False},
    )

    # Then the slot comes back with those, the lead time untouched
    assert answer.status == 200 and answer.body["slotId"] == "Cleaner"
    assert answer.body["policy"] == {
        "thresholdFraction": 0.35,
        "leadTimeDays": 7.0,
        "safetyDays": 2.0,
        "autoReorder": False,
    }


def test_policy_update_refusals(api: Api) -> None:
    # Given a linked device
    linked = api.link()
    cases: list[tuple[str, dict[str, Any], tuple[int, str]]] = [
        ("Nozzle", {"autoReorder": False}, (404, "SLOT_NOT_FOUND")),
        ("Filter", {}, (400, "INVALID_REQUEST")),
        ("Filter", {"thresholdFraction": 1.5}, (400, "INVALID_REQUEST")),
        ("Filter", {"leadTimeDays": "7"}, (400, "INVALID_REQUEST")),
        ("Filter", {"safetyDays": 3}, (400, "INVALID_REQUEST")),
    ]

    # When the app sends policy changes the contract refuses
    answers = [
        api.request(
            "PUT",
            POLICY,
            concrete(POLICY, linked.serial, slot_id),
            authorization=linked.owner.bearer,
            body=body,
        )
        for slot_id, body, _ in cases
    ]

    # Then each gets its error, and the policy is unchanged
    assert [(a.status, a.error_code) for a in answers] == [expected for _, _, expected in cases]
    read = api.request("GET", DEVICE, concrete(DEVICE, linked.serial), authorization=linked.owner.bearer)
    assert all(slot["policy"]["thresholdFraction"] == 0.2 for slot in read.body["slots"])


def test_cancelling_test_orders_reaches_drs_for_all_slots_or_one(api: Api) -> None:
    # Given a linked test device
    linked = api.link(is_test_device=True)

    # When the app cancels all test orders, then one slot's
    everything = api.request(
        "DELETE", TEST_ORDERS, concrete(TEST_ORDERS, linked.serial), authorization=linked.owner.bearer
    )
    one = api.request(
        "DELETE",
        SLOT_TEST_ORDER,
        concrete(SLOT_TEST_ORDER, linked.serial, "Filter"),
        authorization=linked.owner.bearer,
    )

    # Then DRS was asked both times and its answer is relayed
    assert everything.status == 200
    assert {slot["slotId"] for slot in everything.body["slots"]} == {"Filter", "Cleaner"}
    assert one.status == 200 and [slot["slotId"] for slot in one.body["slots"]] == ["Filter"]
    assert all(slot["orderStatus"] == "NO_ORDER_IN_PROGRESS" for slot in everything.body["slots"])
    assert [call["path"] for call in api.sim.calls("cancelTestOrders")] == [
        "/testOrders",
        "/testOrders/slots/Filter",
    ]


def test_cancelling_test_orders_of_a_real_device_answers_409(api: Api) -> None:
    # Given a linked production device
    linked = api.link(is_test_device=False)

    # When the app tries to cancel test orders
    answer = api.request(
        "DELETE", TEST_ORDERS, concrete(TEST_ORDERS, linked.serial), authorization=linked.owner.bearer
    )

    # Then 409 NOT_A_TEST_DEVICE and DRS was not bothered
    assert (answer.status, answer.error_code) == (409, "NOT_A_TEST_DEVICE")
    assert api.sim.calls("cancelTestOrders") == []


def test_openapi_document_is_served_without_auth_and_lists_every_companion_route(api: Api) -> None:
    # When anyone fetches the OpenAPI document
    answer = api.request("GET", OPENAPI)

    # Then it describes the companion routes, their bodies and the error-free shapes
    assert answer.status == 200 and answer.body["openapi"].startswith("3.")
    paths = answer.body["paths"]
    assert set(paths) >= {
        "/v1/devices",
        "/v1/devices/{serial}",
        "/v1/devices/{serial}/registration",
        "/v1/devices/{serial}/settings-link",
        "/v1/devices/{serial}/slots/{slotId}/policy",
        "/v1/devices/{serial}/test-orders",
        "/v1/devices/{serial}/test-orders/{slotId}",
    }
    assert set(paths["/v1/devices/{serial}/registration"]) == {"post", "delete"}
    schemas = answer.body["components"]["schemas"]
    assert schemas["RegistrationRequest"]["additionalProperties"] is False
    assert "companion" in answer.body["components"]["securitySchemes"]


# --- secrets stay out of the logs --------------------------------------------------------------------


def test_no_token_secret_or_credential_appears_in_any_log_line(
    api: Api, aws: AwsEnv, captured_logs: pytest.CaptureFixture[str]
) -> None:
    # Given a full flow: link (web and PKCE), read, settings link, policy, test orders, unlink
    customer = api.customer()
    linked = api.link(customer)
    pkce = api.link(customer, pkce=True)
    secrets_seen = {customer.app_token, linked.device_token, pkce.device_token, SIM_CLIENT_SECRET}
    for device in (linked, pkce):
        secrets_seen.add(stored_refresh_token(aws, device.serial))
        secrets_seen.add(dependencies.token_vault().access_token(device.serial))
    api.request("GET", DEVICES, authorization=customer.bearer)
    settings = api.request(
        "GET",
        SETTINGS_LINK,
        concrete(SETTINGS_LINK, linked.serial),
        authorization=customer.bearer,
        query={"exitUri": "myapp://x"},
    )
    secrets_seen.add(parse_qs(urlsplit(settings.body["url"]).query)["access_token"][0])
    api.request(
        "PUT",
        POLICY,
        concrete(POLICY, linked.serial),
        authorization=customer.bearer,
        body={"autoReorder": False},
    )
    api.request("DELETE", TEST_ORDERS, concrete(TEST_ORDERS, linked.serial), authorization=customer.bearer)
    api.device_authorizer(linked.serial, f"Device {linked.device_token}")
    api.device_authorizer(pkce.serial, f"Device {linked.device_token}")
    bad_code = api.register(customer, new_serial(), "ANthisCodeIsNotReal1")
    for device in (linked, pkce):
        api.request(
            "DELETE", REGISTRATION, concrete(REGISTRATION, device.serial), authorization=customer.bearer
        )
    assert bad_code.status == 400 and settings.status == 200

    # When the captured log lines are read
    output = captured_logs.readouterr()
    logged = output.out + output.err

    # Then the flow was logged, but none of the secrets was
    assert "device linked" in logged and "device unlinked" in logged
    assert all(secret not in logged for secret in secrets_seen), "a secret reached the logs"
    assert "ANthisCodeIsNotReal1" not in logged
    assert "Atza|" not in logged and "Atzr|" not in logged
