"""A client for the simulator's ``/__sim/`` control routes (docs/api.md §3): tests, the demo, the soak.

It plays the customer and Amazon: create customers, consent in the browser, pick products, drive
orders, move the clock, inject faults, and read what the simulator saw. No retries: a control call that
fails is a bug worth seeing at once (``SimulatorControlError``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import requests


class SimulatorControlError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} answered {status}: {body[:300]}")
        self.status = status


def s256_challenge(verifier: str) -> str:
    """The PKCE S256 code challenge of ``verifier`` (RFC 7636: base64url of SHA-256, no padding)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class SimulatorControl:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._http = requests.Session()

    def request(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> dict[str, Any]:
        """One control call; raises ``SimulatorControlError`` unless it answers ``expect``."""
        response = self._http.request(method, self.url + path, timeout=self._timeout, **kwargs)
        if response.status_code != expect:
            raise SimulatorControlError(method, path, response.status_code, response.text)
        return response.json() if response.content else {}

    # --- customers and consent ---
    def create_customer(self, *, name: str | None = None, order_issue: bool = False) -> dict[str, str]:
        """→ ``{"customerId", "appAccessToken"}``."""
        body: dict[str, Any] = {"orderIssue": order_issue}
        if name:
            body["name"] = name
        return self.request("POST", "/__sim/customers", expect=201, json=body)

    def set_order_issue(self, customer_id: str, order_issue: bool) -> None:
        self.request("PATCH", f"/__sim/customers/{customer_id}", json={"orderIssue": order_issue})

    def remove_maker(self, customer_id: str) -> None:
        """The customer removes the maker in "Manage Login with Amazon": all devices deregistered."""
        self.request("DELETE", f"/__sim/customers/{customer_id}/lwa")

    def authorize(
        self,
        customer_id: str,
        *,
        model_id: str,
        serial: str,
        slots: dict[str, dict[str, Any] | None],
        is_test_device: bool = False,
        code_challenge: str | None = None,
    ) -> tuple[str, str]:
        """The customer's consent in the browser → (authorization code, redirect URI)."""
        body: dict[str, Any] = {
            "customerId": customer_id,
            "modelId": model_id,
            "serial": serial,
            "slots": slots,
            "isTestDevice": is_test_device,
        }
        if code_challenge is not None:
            body["pkce"] = {"codeChallenge": code_challenge}
        answer = self.request("POST", "/__sim/authorize", json=body)
        return str(answer["authorizationCode"]), str(answer["redirectUri"])

    # --- devices and subscriptions ---
    def set_subscription(self, serial: str, slots: dict[str, dict[str, Any] | None]) -> None:
        self.request("PUT", f"/__sim/devices/{serial}/subscription", json={"slots": slots})

    def deregister_device(self, serial: str) -> None:
        """Deregistered from Amazon's side (customer or customer service)."""
        self.request("DELETE", f"/__sim/devices/{serial}")

    def device(self, serial: str) -> dict[str, Any]:
        return self.request("GET", f"/__sim/devices/{serial}")

    # --- orders, clock, faults, notifications ---
    def order_action(self, instance_id: str, action: str, expect: int = 200) -> dict[str, Any]:
        """``ship``, ``deliver``, ``cancel``, ``resolve`` or ``expire`` an order."""
        return self.request("POST", f"/__sim/orders/{instance_id}/{action}", expect=expect)

    def advance_clock(self, seconds: float) -> str:
        return str(self.request("POST", "/__sim/clock", json={"advanceSeconds": seconds})["now"])

    def now(self) -> str:
        return self.advance_clock(0)

    def set_fault(
        self,
        endpoint: str | None,
        rate: float,
        *,
        status: int | None = None,
        latency_ms: float | None = None,
        seed: int | None = None,
    ) -> None:
        body: dict[str, Any] = {"rate": rate}
        for key, value in (
            ("endpoint", endpoint),
            ("status", status),
            ("latencyMs", latency_ms),
            ("seed", seed),
        ):
            if value is not None:
                body[key] = value
        self.request("POST", "/__sim/faults", json=body)

    def configure_notifications(self, **fields: Any) -> None:
        """``version``, ``duplicateRate``, ``reorderRate``, ``delaySeconds``, ``seed``,
        ``testCancelNotifications`` (docs/api.md names)."""
        self.request("POST", "/__sim/notifications/config", json=fields)

    def configure_world(self, **fields: Any) -> dict[str, Any]:
        """``POST /__sim/world`` with ``lateParcelRate``, ``lostNotificationRate``, ``seed``... (docs/api.md
        names); answers every setting and what the world did so far. No fields: just read them."""
        if not fields:
            return self.request("GET", "/__sim/world")
        return self.request("POST", "/__sim/world", json=fields)

    def delay_order(self, instance_id: str, days: float) -> dict[str, Any]:
        """That order's parcel arrives ``days`` after its estimated delivery date."""
        return self.request("POST", f"/__sim/orders/{instance_id}/delay", json={"days": days})

    def orders(self) -> list[dict[str, Any]]:
        """Every order Amazon knows, open or closed, with when its parcel arrives (``arrivesAt``)."""
        return self.request("GET", "/__sim/orders")["orders"]

    def lost_notifications(self) -> list[dict[str, Any]]:
        """The notifications the world lost (never published)."""
        return self.request("GET", "/__sim/notifications/lost")["notifications"]

    def calls(self, operation: str | None = None) -> list[dict[str, Any]]:
        """Every DRS/LWA call the simulator recorded (optionally of one operation), in order."""
        recorded = self.request("GET", "/__sim/calls")["calls"]
        return [call for call in recorded if operation is None or call["operation"] == operation]

    def notifications(self) -> list[dict[str, Any]]:
        return self.request("GET", "/__sim/notifications")["notifications"]
