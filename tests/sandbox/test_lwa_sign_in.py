"""The simulator's Login with Amazon page (``/ap/oa``) and its token route for browsers, over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs, urlparse

import requests

from sandbox.simulator import SimulatorServer

CLIENT_ID = "amzn1.application-oa2-client.sandbox"
APP = "http://127.0.0.1:1/app/"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def _request(challenge: str, scope: str = "profile", **extra: str) -> dict[str, str]:
    return {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": APP,
        "state": "s-1",
        "scope": scope,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def _consent_scope(model: str = "AquaPure-WF1", serial: str = "WF-9", test: bool = False) -> str:
    return json.dumps({"dash:replenish": {"device_model": model, "serial": serial, "is_test_device": test}})


def _customer(simulator: SimulatorServer, name: str) -> str:
    answer = requests.post(f"{simulator.url}/__sim/customers", json={"name": name}, timeout=10)
    return answer.json()["customerId"]


def _answer(simulator: SimulatorServer, form: dict[str, str]) -> dict[str, list[str]]:
    """POST the page's form; the 302's query (code or error), its target checked."""
    answer = requests.post(f"{simulator.url}/ap/oa", data=form, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    location = urlparse(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == APP
    return parse_qs(location.query)


def _token(simulator: SimulatorServer, code: str, verifier: str) -> requests.Response:
    return requests.post(
        f"{simulator.url}/auth/o2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP,
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        },
        headers={"Origin": "http://127.0.0.1:1"},
        timeout=10,
    )


def test_sign_in_page_lists_the_customers_with_labelled_choices(simulator: SimulatorServer) -> None:
    _customer(simulator, "Ana")
    _, challenge = _pkce()
    page = requests.get(f"{simulator.url}/ap/oa", params=_request(challenge), timeout=10)
    assert page.status_code == 200
    assert "<h1>Sign in with Amazon</h1>" in page.text
    assert "> Ana</label>" in page.text
    assert 'name="state" value="s-1"' in page.text


def test_sign_in_code_exchanges_in_the_browser_for_an_app_token_of_that_customer(
    simulator: SimulatorServer,
) -> None:
    customer = _customer(simulator, "Ana")
    verifier, challenge = _pkce()
    query = _answer(simulator, {**_request(challenge), "customer": customer, "action": "allow"})
    assert query["state"] == ["s-1"]
    token = _token(simulator, query["code"][0], verifier)
    assert token.status_code == 200
    assert token.headers["Access-Control-Allow-Origin"] == "*"
    assert "refresh_token" not in token.json()
    info = requests.get(
        f"{simulator.url}/auth/o2/tokeninfo",
        params={"access_token": token.json()["access_token"]},
        timeout=10,
    ).json()
    assert (info["user_id"], info["aud"]) == (customer, CLIENT_ID)
    # Single use, like every LWA code
    assert _token(simulator, query["code"][0], verifier).json()["error"] == "invalid_grant"


def test_sign_in_code_needs_its_pkce_verifier(simulator: SimulatorServer) -> None:
    customer = _customer(simulator, "Ana")
    _, challenge = _pkce()
    query = _answer(simulator, {**_request(challenge), "customer": customer, "action": "allow"})
    wrong_verifier, _ = _pkce()
    refused = _token(simulator, query["code"][0], wrong_verifier)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")


def test_consent_registers_the_device_with_the_products_picked_per_slot(simulator: SimulatorServer) -> None:
    customer = _customer(simulator, "Ana")
    verifier, challenge = _pkce()
    form = {
        **_request(challenge, scope="dash:replenish", scope_data=_consent_scope(test=True)),
        "customer": customer,
        "slot.Filter": "B0WFILTER02",
        "slot.Cleaner": "none",
        "action": "allow",
    }
    query = _answer(simulator, form)
    assert query["scope"] == ["dash:replenish"]
    assert _token(simulator, query["code"][0], verifier).status_code == 200
    device = requests.get(f"{simulator.url}/__sim/devices/WF-9", timeout=10).json()
    assert (device["customerId"], device["modelId"], device["isTestDevice"]) == (
        customer,
        "AquaPure-WF1",
        True,
    )
    assert device["slots"] == {
        "Filter": {"asin": "B0WFILTER02", "quantity": 300, "unit": "L"},
        "Cleaner": None,
    }


def test_consent_page_offers_each_slot_of_the_model(simulator: SimulatorServer) -> None:
    _, challenge = _pkce()
    params = _request(challenge, scope="dash:replenish", scope_data=_consent_scope(model="InkJet-P200"))
    page = requests.get(f"{simulator.url}/ap/oa", params=params, timeout=10)
    assert page.status_code == 200
    assert '<label for="slot.Black">Black</label>' in page.text
    assert '<label for="slot.Color">Color</label>' in page.text
    # No customer yet: a new one can be named on the page
    assert 'value="new" checked' in page.text


def test_a_new_customer_named_on_the_page_signs_in(simulator: SimulatorServer) -> None:
    verifier, challenge = _pkce()
    form = {**_request(challenge), "customer": "new", "new_customer_name": "Dora", "action": "allow"}
    query = _answer(simulator, form)
    token = _token(simulator, query["code"][0], verifier).json()["access_token"]
    info = requests.get(f"{simulator.url}/auth/o2/tokeninfo", params={"access_token": token}, timeout=10)
    assert info.status_code == 200


def test_cancel_redirects_with_access_denied_and_the_state(simulator: SimulatorServer) -> None:
    customer = _customer(simulator, "Ana")
    _, challenge = _pkce()
    query = _answer(simulator, {**_request(challenge), "customer": customer, "action": "deny"})
    assert (query["error"], query["state"]) == (["access_denied"], ["s-1"])
    assert "code" not in query


def test_an_unknown_model_is_redirected_as_invalid_scope(simulator: SimulatorServer) -> None:
    _, challenge = _pkce()
    params = _request(challenge, scope="dash:replenish", scope_data=_consent_scope(model="Toaster-1"))
    answer = requests.get(f"{simulator.url}/ap/oa", params=params, allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    assert parse_qs(urlparse(answer.headers["Location"]).query)["error"] == ["invalid_scope"]


def test_an_unknown_client_or_a_relative_redirect_gets_a_page_not_a_redirect(
    simulator: SimulatorServer,
) -> None:
    _, challenge = _pkce()
    for bad in ({"client_id": "amzn1.application-oa2-client.other"}, {"redirect_uri": "/app/"}):
        answer = requests.get(
            f"{simulator.url}/ap/oa", params={**_request(challenge), **bad}, allow_redirects=False, timeout=10
        )
        assert answer.status_code == 400
        assert "Location" not in answer.headers
        assert 'role="alert"' in answer.text or "role='alert'" in answer.text


def test_token_route_answers_the_browsers_preflight(simulator: SimulatorServer) -> None:
    answer = requests.options(
        f"{simulator.url}/auth/o2/token",
        headers={"Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert answer.headers["Access-Control-Allow-Methods"] == "POST"
