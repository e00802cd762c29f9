"""Every route, for every kind of caller: no token, a bad token, another user's token, another device's
token, the right token, with the status each must get.

Companion routes go through the companion authorizer and the companion function as API Gateway wires
them (a missing Authorization header → 401 without calling the authorizer, a denial → 403). The device
route (``POST /v1/devices/{serial}/usage``, issue 4's function) is checked at its authorizer's decision.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.support import api_fixtures
from tests.support.api_fixtures import (
    COMPANION_ROUTES,
    DEVICES,
    POLICY,
    REGISTRATION,
    SETTINGS_LINK,
    USAGE,
    Api,
    Linked,
    concrete,
)

api = api_fixtures.api
simulator = api_fixtures.simulator

KINDS = ["none", "bad", "other_user", "other_device", "right"]
# What each caller gets per route. Another user passes the authorizer but never sees the device (404);
# on registration the serial is held by someone else (409); their own list simply lacks it.
EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    route: {"none": 401, "bad": 403, "other_user": 404, "other_device": 403, "right": 200}
    for route in COMPANION_ROUTES
}
EXPECTED[("POST", REGISTRATION)].update(other_user=409, right=201)
EXPECTED[("DELETE", REGISTRATION)].update(right=204)
EXPECTED[("GET", DEVICES)].update(other_user=200)


def _authorization(kind: str, device: Linked, other: Linked) -> str | None:
    return {
        "none": None,
        "bad": f"Bearer Atza|{secrets.token_urlsafe(32)}",
        "other_user": other.owner.bearer,
        # A device credential is no companion credential, whatever scheme it is sent with.
        "other_device": f"Device {other.device_token}",
        "right": device.owner.bearer,
    }[kind]


def _options(
    api: Api, method: str, template: str, kind: str, device: Linked, other: Linked
) -> dict[str, Any]:
    if (method, template) == ("POST", REGISTRATION):
        # Each attempt carries a fresh consent of the caller it claims to be.
        caller = other.owner if kind == "other_user" else device.owner
        code = api.consent(caller, device.serial)
        body = {
            "modelId": "WaterFilterPro",
            "pairingCode": api.pairing_code(device.serial),
            "authorizationCode": code,
            "redirectUri": "https://localhost/callback",
        }
        return {"body": body}
    if template == POLICY:
        return {"body": {"autoReorder": False}}
    if template == SETTINGS_LINK:
        return {"query": {"exitUri": "myapp://done"}}
    return {}


@pytest.mark.parametrize(
    ("method", "template"), COMPANION_ROUTES, ids=[f"{m} {t}" for m, t in COMPANION_ROUTES]
)
def test_companion_route_authorization(api: Api, method: str, template: str) -> None:
    # Given a customer's linked test device, and another customer with their own device
    device = api.link()
    other = api.link()
    path = concrete(template, device.serial)

    # When each kind of caller calls the route (the right one last: it may unlink the device)
    answers = {
        kind: api.request(
            method,
            template,
            path,
            authorization=_authorization(kind, device, other),
            **_options(api, method, template, kind, device, other),
        )
        for kind in KINDS
    }

    # Then each gets the expected status, and only authorized callers reached the function
    assert {kind: answer.status for kind, answer in answers.items()} == EXPECTED[(method, template)]
    for kind in ("none", "bad", "other_device"):
        assert not answers[kind].reached_function, kind
    if template == DEVICES:
        assert device.serial not in {d["serial"] for d in answers["other_user"].body["devices"]}
        assert device.serial in {d["serial"] for d in answers["right"].body["devices"]}


def test_a_token_issued_to_another_lwa_application_is_refused(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a valid LWA token, but our authorizer configured for another LWA client id (audience)
    device = api.link()
    monkeypatch.setenv("LWA_CLIENT_ID", "amzn1.application-oa2-client.someoneelse")
    from drs_core import dependencies

    dependencies.reset()
    api.functions.companion_authorizer.TOKEN_CACHE.clear()

    # When the app calls with it
    answer = api.request("GET", DEVICES, authorization=device.owner.bearer)

    # Then the authorizer refuses it (tokeninfo's aud is not ours)
    assert answer.status == 403 and not answer.reached_function


def test_companion_authorizer_caches_verified_tokens_in_process(api: Api) -> None:
    # Given a customer's token verified once
    customer = api.customer()
    api.functions.companion_authorizer.TOKEN_CACHE.clear()
    first = api.request("GET", DEVICES, authorization=customer.bearer)
    calls = len(api.sim.calls("tokeninfo"))

    # When the same token comes again
    second = api.request("GET", DEVICES, authorization=customer.bearer)

    # Then tokeninfo was not asked again
    assert first.status == second.status == 200
    assert calls == 1 and len(api.sim.calls("tokeninfo")) == 1


def test_device_route_authorization(api: Api) -> None:
    # Given two linked devices
    device = api.link()
    other = api.link()
    credentials = {
        "none": None,
        "bad": f"Device {secrets.token_urlsafe(32)}",
        "other_user": device.owner.bearer,  # the owner's app token is no device credential
        "other_device": f"Device {other.device_token}",
        "right": f"Device {device.device_token}",
    }

    # When each kind of caller's request to device A's usage route reaches the device authorizer
    decisions = {
        kind: api.device_authorizer(device.serial, value, USAGE) for kind, value in credentials.items()
    }

    # Then only device A's own credential is allowed, with the serial as context
    assert {kind: d["isAuthorized"] for kind, d in decisions.items()} == {
        "none": False,
        "bad": False,
        "other_user": False,
        "other_device": False,
        "right": True,
    }
    assert set(decisions["right"]["context"]) == {"serial", "linkId"}
    assert decisions["right"]["context"]["serial"] == device.serial
    # And A's credential on B's path is refused: the credential is bound to its serial
    assert (
        api.device_authorizer(other.serial, f"Device {device.device_token}", USAGE)["isAuthorized"] is False
    )
    # And the scheme is required: the bare credential or a Bearer one is refused
    assert api.device_authorizer(device.serial, device.device_token, USAGE)["isAuthorized"] is False
    assert (
        api.device_authorizer(device.serial, f"Bearer {device.device_token}", USAGE)["isAuthorized"] is False
    )
