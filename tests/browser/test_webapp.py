"""The companion web app in a real browser, against the system ``make sandbox`` serves.

A customer signs in with Login with Amazon (the simulator's ``/ap/oa`` page, authorization code + PKCE,
the token call made by the browser across origins), links a water filter through the DRS consent,
the device reports a low level through the API, the order shows up, the customer changes the slot's
policy and opens the Amazon settings page, another customer's attempt to link the same device is
refused and shown as an error, and the owner unlinks it. Every step is driven from the keyboard or by
the controls' labels, on a phone-sized screen.
"""

from __future__ import annotations

import re
from typing import Any

import requests
from playwright.sync_api import BrowserContext, Page, expect

from sandbox.system import EmbeddedSystem
from tests.browser.conftest import Screenshots

SERIAL = "WF-0001"
MODEL = "AquaPure-WF1"
# Levels move in the background (pumps, notifications); the app re-reads every 2 s in the sandbox.
BACKGROUND_TIMEOUT_MS = 60_000


def _sign_in(
    page: Page, app_url: str, simulator_url: str, customer: str, screenshot: Screenshots | None = None
) -> None:
    """From the signed-out page, with the keyboard: Sign in with Amazon, pick the customer, come back."""
    page.get_by_role("button", name="Sign in with Amazon").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(re.escape(f"{simulator_url}/ap/oa") + r"\?.*scope=profile"))
    expect(page.get_by_role("heading", name="Sign in with Amazon")).to_be_visible()
    page.get_by_label(customer, exact=True).check()
    if screenshot is not None:
        screenshot(page, "lwa-sign-in")
    page.get_by_role("button", name="Sign in").press("Enter")
    page.wait_for_url(app_url)
    expect(page.get_by_text("Signed in with Amazon")).to_be_visible()


def _sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in with Amazon")).to_be_visible()


def _provision(sandbox: EmbeddedSystem, serial: str, model_id: str) -> str:
    """The device leaves the factory (the sandbox's registry): its pairing code, as the device shows it."""
    answer = requests.post(
        f"{sandbox.gateway_url}/__sandbox/devices", json={"serial": serial, "modelId": model_id}, timeout=30
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["pairingCode"]


def _start_link(
    page: Page,
    simulator_url: str,
    pairing_code: str = "",
    *,
    serial: str = SERIAL,
    model: str = MODEL,
    test_device: bool = False,
) -> None:
    """Fill the link form with its labels and submit it: the browser goes to the DRS consent page."""
    page.get_by_label("Serial number").fill(serial)
    page.get_by_label("Device model").select_option(model)
    if test_device:
        page.get_by_label("Test device").check()
    page.get_by_label("Pairing code").fill(pairing_code)
    page.get_by_role("button", name="Link with Amazon").click()
    page.wait_for_url(re.compile(re.escape(f"{simulator_url}/ap/oa") + r"\?.*dash%3Areplenish"))


# Every visible control must have an accessible name (a label, aria-label or text) and the page must
# fit the phone's width (no sideways scrolling).
_UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('input, select, button, meter, textarea')]
  .filter((el) => el.offsetParent !== null && el.type !== 'hidden')
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
  .map((el) => el.outerHTML)"""
_OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


def _check_phone_layout_and_labels(page: Page) -> None:
    assert page.evaluate(_UNLABELLED_CONTROLS) == []
    assert page.evaluate(_OVERFLOW) <= 0


def _device_reading(sandbox: EmbeddedSystem, device_token: str, filter_left: float) -> dict[str, Any]:
    """The device posts its levels through the API, observed now on the simulated clock."""
    now = sandbox.control.now()  # type: ignore[union-attr]
    answer = requests.post(
        f"{sandbox.gateway_url}/v1/devices/{SERIAL}/usage",
        headers={"Authorization": f"Device {device_token}"},
        json={
            "readings": [
                {"slotId": "Filter", "observedAt": now, "remainingQuantity": filter_left},
                {"slotId": "Cleaner", "observedAt": now, "remainingQuantity": 450},
            ]
        },
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    return answer.json()


def _api_device(sandbox: EmbeddedSystem, page: Page) -> dict[str, Any]:
    """The device as the API holds it, read with the token the signed-in page holds."""
    token = page.evaluate("sessionStorage.getItem('companion.accessToken')")
    answer = requests.get(
        f"{sandbox.gateway_url}/v1/devices/{SERIAL}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_customer_links_watches_tunes_and_unlinks_a_device_in_the_browser(
    sandbox: EmbeddedSystem, browser_context: BrowserContext, screenshot: Screenshots
) -> None:
    control = sandbox.control
    assert control is not None
    control.create_customer(name="Ana")
    control.create_customer(name="Ben")
    pairing_code = _provision(sandbox, SERIAL, MODEL)
    app_url = f"{sandbox.gateway_url}/app/"
    sim_url = sandbox.simulator_url
    page = browser_context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))

    # Sign in: the LWA page of the simulator, then back with a code the browser exchanges itself
    page.goto(app_url)
    expect(page.get_by_role("heading", name="Replenishment companion")).to_be_visible()
    screenshot(page, "signed-out")
    _sign_in(page, app_url, sim_url, "Ana", screenshot)
    expect(page.get_by_text("No linked device yet.")).to_be_visible()
    screenshot(page, "signed-in")
    _check_phone_layout_and_labels(page)
    token_calls = [c for c in control.calls("token") if c["status"] == 200]
    assert len(token_calls) == 1  # the browser's PKCE exchange, across origins (CORS)

    # Link: the pairing code read off the device, then the DRS consent (the customer, a product per slot)
    _start_link(page, sim_url, pairing_code)
    expect(page.get_by_role("heading", name="Amazon Dash Replenishment")).to_be_visible()
    page.get_by_label("Ana", exact=True).check()
    page.get_by_label("Filter").select_option("B0WFILTER01")
    page.get_by_label("Cleaner").select_option("B0WCLEAN01")
    screenshot(page, "drs-consent")
    _check_phone_layout_and_labels(page)
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(app_url)
    expect(page.get_by_role("status")).to_have_text(f"Device {SERIAL} is linked.")
    device_token = page.locator("#device-token").inner_text()
    assert device_token
    device = page.locator(f"#device-{SERIAL}")
    expect(device.get_by_role("heading", name=f"{SERIAL} · AquaPure water filter")).to_be_visible()
    screenshot(page, "linked")
    page.get_by_role("button", name="Done").click()
    expect(page.locator("#device-token")).to_be_hidden()

    # A low reading from the device, through the API: the backend orders, the app shows the order
    _device_reading(sandbox, device_token, filter_left=20)
    filter_slot = page.locator(f"#slot-{SERIAL}-Filter")
    expect(filter_slot.locator(".order-state")).to_have_text("Placed", timeout=BACKGROUND_TIMEOUT_MS)
    expect(filter_slot.locator(".delivery")).to_contain_text("expected", timeout=BACKGROUND_TIMEOUT_MS)
    expect(filter_slot.get_by_role("meter", name="Filter level")).to_have_attribute("value", "20")
    expect(filter_slot.locator(".level")).to_have_text("20 of 150 L (13 %)")
    expect(filter_slot.locator("figcaption")).to_contain_text("ordered")
    expect(filter_slot.locator("svg[role=img] polyline")).to_have_count(1)
    screenshot(page, "order-placed")
    _check_phone_layout_and_labels(page)

    # A policy change on the Filter slot, typed into its labelled fields
    filter_slot.get_by_label("Reorder at (% left)").fill("30")
    filter_slot.get_by_label("Days before running out").fill("10")
    filter_slot.get_by_label("Reorder automatically").uncheck()
    filter_slot.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("status")).to_have_text(f"Policy of {SERIAL} Filter saved.")
    policy = next(s for s in _api_device(sandbox, page)["slots"] if s["slotId"] == "Filter")["policy"]
    assert (policy["thresholdFraction"], policy["leadTimeDays"], policy["autoReorder"]) == (0.3, 10, False)
    expect(filter_slot.get_by_label("Reorder at (% left)")).to_have_value("30")
    screenshot(page, "policy-saved")

    # The DRS settings page on Amazon, and back
    page.get_by_role("button", name=f"Amazon settings of {SERIAL}").click()
    page.wait_for_url(re.compile(re.escape(f"{sim_url}/settings")))
    expect(page.get_by_role("heading", name=f"Device {SERIAL}")).to_be_visible()
    screenshot(page, "amazon-settings")
    page.get_by_role("link", name="Done").click()
    page.wait_for_url(app_url)

    # A denied request: Ben, who has the device in hand, consents for Ana's device; the API refuses and
    # the app says why
    _sign_out(page)
    _sign_in(page, app_url, sim_url, "Ben")
    _start_link(page, sim_url, pairing_code)
    page.get_by_label("Ben", exact=True).check()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(app_url)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("This device is already linked to another Amazon account.")
    expect(page.get_by_text("No linked device yet.")).to_be_visible()
    screenshot(page, "denied")

    # Unlink, as its owner
    _sign_out(page)
    _sign_in(page, app_url, sim_url, "Ana")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Unlink {SERIAL}").click()
    expect(page.get_by_role("status")).to_have_text(f"Device {SERIAL} is unlinked.")
    device = page.locator(f"#device-{SERIAL}")
    expect(device.locator(".device-status")).to_contain_text("Unlinked: link it again")
    expect(device.get_by_role("button")).to_have_count(0)
    screenshot(page, "unlinked")
    assert control.device(SERIAL)["registered"] is False

    assert page_errors == []
    assert not [status for status in sandbox.http_statuses if status >= 500]


def test_a_consent_the_customer_cancels_is_shown_as_an_error(
    sandbox: EmbeddedSystem, browser_context: BrowserContext, screenshot: Screenshots
) -> None:
    control = sandbox.control
    assert control is not None
    control.create_customer(name="Cleo")
    app_url = f"{sandbox.gateway_url}/app/"
    page = browser_context.new_page()
    page.goto(app_url)
    _sign_in(page, app_url, sandbox.simulator_url, "Cleo")
    _start_link(page, sandbox.simulator_url)
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url(app_url)
    expect(page.get_by_role("alert")).to_have_text("You did not allow access on Amazon.")
    screenshot(page, "consent-cancelled")


def test_a_sign_in_the_api_no_longer_accepts_is_shown_and_ends_the_session(
    sandbox: EmbeddedSystem, browser_context: BrowserContext, screenshot: Screenshots
) -> None:
    page = browser_context.new_page()
    app_url = f"{sandbox.gateway_url}/app/"
    page.goto(app_url)
    # A token LWA does not know: the companion authorizer refuses it, API Gateway answers 403
    page.evaluate("sessionStorage.setItem('companion.accessToken', 'Atza|revoked-or-unknown')")
    page.reload()
    expect(page.get_by_role("alert")).to_have_text(
        "Your sign-in is no longer valid. Please sign in again. (Forbidden)"
    )
    expect(page.get_by_role("button", name="Sign in with Amazon")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('companion.accessToken')") is None
    screenshot(page, "sign-in-refused")


def test_test_orders_of_a_test_device_are_cancelled_from_the_app(
    sandbox: EmbeddedSystem, browser_context: BrowserContext, screenshot: Screenshots
) -> None:
    control = sandbox.control
    assert control is not None
    control.create_customer(name="Dev")
    pairing_code = _provision(sandbox, "PR-0001", "InkJet-P200")
    app_url = f"{sandbox.gateway_url}/app/"
    sim_url = sandbox.simulator_url
    page = browser_context.new_page()
    page.goto(app_url)
    _sign_in(page, app_url, sim_url, "Dev")
    _start_link(page, sim_url, pairing_code, serial="PR-0001", model="InkJet-P200", test_device=True)
    page.get_by_label("Dev", exact=True).check()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(app_url)
    expect(page.get_by_role("status")).to_have_text("Device PR-0001 is linked.")
    device_token = page.locator("#device-token").inner_text()
    now = control.now()
    answer = requests.post(
        f"{sandbox.gateway_url}/v1/devices/PR-0001/usage",
        headers={"Authorization": f"Device {device_token}"},
        json={"readings": [{"slotId": "Black", "observedAt": now, "remainingQuantity": 2}]},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    black = page.locator("#slot-PR-0001-Black")
    expect(black.locator(".order-state")).to_have_text("Placed", timeout=BACKGROUND_TIMEOUT_MS)
    test_orders = [o for o in control.device("PR-0001")["orders"] if o["isTestOrder"]]
    assert [o["state"] for o in test_orders] == ["PLACED"]
    screenshot(page, "test-order-placed")

    page.get_by_role("button", name="Cancel the test orders of PR-0001").click()
    expect(page.get_by_role("status")).to_have_text("Test orders of PR-0001 cancelled.")
    expect(black.locator(".order-state")).not_to_have_text("Placed", timeout=BACKGROUND_TIMEOUT_MS)
    assert [o["state"] for o in control.device("PR-0001")["orders"]] == ["CANCELLED"]
    screenshot(page, "test-orders-cancelled")
