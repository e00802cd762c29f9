"""The simulated Amazon side: customers, device registrations, LWA grants, orders and notifications.

``Simulator`` is the whole in-memory model behind one re-entrant lock. Its public methods mirror the
DRS/LWA calls and the ``/__sim/`` control actions; the WSGI app (``app.py``) only parses HTTP around
them. Rules settled in docs/api.md §3 are implemented here. Time is only ever read from the injected clock,
and whatever became due (deliveries, 72 h expiries, delayed notifications) fires at the start of the
next operation after the clock moved, so a clock shared with the backend stays consistent.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import re
import secrets
import string
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol
from urllib.parse import urlparse

from drs_core.clock import ManualClock, parse_iso, to_iso

from . import notifications as note
from .faults import Fault, FaultInjector
from .notifications import NotificationChannel
from .records import (
    ACCESS_TOKEN_LIFETIME,
    CUSTOMER_CANCEL_WINDOW,
    DELIVERY_TIME,
    ORDER_INFO_STATUS,
    AccessGrant,
    AuthorizationCode,
    CallRecord,
    Customer,
    Device,
    Order,
    OrderState,
    Product,
    RefreshGrant,
    SignInCode,
)
from .world import World

logger = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "amzn1.application-oa2-client.sandbox"
DEFAULT_CLIENT_SECRET = "sandbox-secret"
DEFAULT_REDIRECT_URI = "https://localhost/callback"
DEFAULT_TOPIC_ARN = "arn:aws:sns:us-east-1:000000000000:drs-notifications"
LWA_ISSUER = "https://www.amazon.com"

# DRS tells token trouble from other bad requests by its x-amzn-ErrorType header (``error_type``), not
# by these messages.
MISSING_TOKEN = "Missing access token"
INVALID_TOKEN = "Invalid or expired access token"

# What an authorisation code looks like (``_new_code``, and LWA's own: letters and digits, ~20 long).
_CODE_SHAPE = re.compile(r"[A-Za-z0-9]{8,64}")

ORDER_ACTIONS = ("ship", "deliver", "cancel", "resolve", "expire")
# ``POST /__sim/orders/{id}/delay``: how many days after its estimate a parcel may be made to arrive.
MAX_DELAY_DAYS = 60
_SLOT_STATUS_NUMBERS = ("remainingQuantityInUnit", "originalQuantityInUnit", "totalQuantityOnHand")
_SLOT_STATUS_DATES = ("expectedReplenishmentDate", "lastUseDate")


class SimulatorError(Exception):
    """A request the simulated Amazon refuses; ``status`` is the HTTP answer, ``error_type`` the DRS
    routes' ``x-amzn-ErrorType`` (only ``InvalidTokenException`` is relied on by clients)."""

    status = 400
    error_type = "ValidationException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(SimulatorError):
    status = 400


class TokenRejected(BadRequest):
    """400 because of the access token (missing, unknown, expired, revoked, or not a device token)."""

    error_type = "InvalidTokenException"


class NotFound(SimulatorError):
    status = 404
    error_type = "ResourceNotFoundException"


class Conflict(SimulatorError):
    status = 409
    error_type = "ConflictException"


class OAuthError(Exception):
    """An LWA error answer: ``{"error": error, "error_description": description}`` with ``status``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description


@dataclass(frozen=True)
class InvalidBody:
    """Stands for a DRS request body that could not be decoded; rejected after the slot check."""

    reason: str


class Publisher(Protocol):
    """Receives every notification delivery (duplicates included), in delivery order."""

    def publish(self, envelope: dict[str, object]) -> None: ...


class Simulator:
    """The simulated DRS + LWA state. Thread-safe; share one instance per simulated Amazon."""

    def __init__(
        self,
        *,
        clock: ManualClock | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        topic_arn: str = DEFAULT_TOPIC_ARN,
        publisher: Publisher | None = None,
        redirect_uri: str = DEFAULT_REDIRECT_URI,
    ) -> None:
        self.clock = clock or ManualClock()
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.app_id = f"amzn1.application.{uuid.uuid5(uuid.NAMESPACE_URL, client_id).hex}"
        self._publisher = publisher
        self._lock = threading.RLock()
        # Separate from the state lock so a publisher may call back into the simulator.
        self._publish_lock = threading.Lock()
        self._customers: dict[str, Customer] = {}
        self._devices: dict[str, Device] = {}  # serial -> its latest registration
        self._registrations: dict[int, Device] = {}
        self._registration_ids = itertools.count(1)
        self._access: dict[str, AccessGrant] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._tokens_of: dict[int, list[str]] = {}  # registration -> its access and refresh tokens
        self._codes: dict[str, AuthorizationCode] = {}
        self._sign_in_codes: dict[str, SignInCode] = {}
        self._orders: dict[str, Order] = {}
        self._open_orders: dict[tuple[int, str], Order] = {}  # (registration, slot) -> open order
        self._calls: list[dict[str, object]] = []
        self._faults = FaultInjector()
        self._channel = NotificationChannel(topic_arn)
        self._world = World()
        self._lost: list[dict[str, object]] = []  # notifications the world lost (never published)
        self._seen_now = self.clock.now()

    # ------------------------------------------------------------------ DRS
    def replenish(self, access_token: str | None, slot_id: str) -> tuple[str, str]:
        """``POST /replenish/{slotId}`` → ``(detailCode, eventInstanceId)``."""
        with self._transaction() as now:
            device = self._device_for(access_token, now)
            product = self._slot(device, slot_id)
            open_order = self._open_orders.get((device.registration_id, slot_id))
            if open_order is not None:
                return "ORDER_INPROGRESS", open_order.instance_id
            if product is None:
                raise BadRequest("No product is selected for this slot")
            troubled = self._customers[device.customer_id].order_issue
            order = Order(
                instance_id=_new_instance_id(),
                registration_id=device.registration_id,
                serial=device.serial,
                slot_id=slot_id,
                product=product,
                is_test=device.is_test_device,
                requested_at=now,
                state=OrderState.TROUBLED if troubled else OrderState.PLACED,
                placed_at=None if troubled else now,
            )
            self._orders[order.instance_id] = order
            self._open_orders[(device.registration_id, slot_id)] = order
            if not troubled:
                self._place(order)
                self._notify_order(note.ORDER_PLACED, order, now)
            detail = "TEST_ORDER_PLACED" if device.is_test_device else "STANDARD_ORDER_PLACED"
            return detail, order.instance_id

    def slot_status(self, access_token: str | None, slot_id: str, report: object) -> None:
        """``POST /slotStatus/{slotId}``: validate and keep the device's latest report of the slot."""
        with self._transaction() as now:
            device = self._device_for(access_token, now)
            self._slot(device, slot_id)
            fields = _checked_object(report, required=_SLOT_STATUS_NUMBERS + _SLOT_STATUS_DATES)
            for name in _SLOT_STATUS_NUMBERS:
                _check_quantity(fields[name], name)
            for name in _SLOT_STATUS_DATES:
                _check_date(fields[name], name)
            device.slot_reports[slot_id] = {**fields, "receivedAt": to_iso(now)}

    def device_status(self, access_token: str | None, report: object) -> None:
        """``POST /deviceStatus``: validate and keep the device's latest activity report."""
        with self._transaction() as now:
            device = self._device_for(access_token, now)
            fields = _checked_object(report, required=("mostRecentlyActiveDate",))
            _check_date(fields["mostRecentlyActiveDate"], "mostRecentlyActiveDate")
            device.last_device_status = {**fields, "receivedAt": to_iso(now)}

    def subscription_info(self, access_token: str | None, version: str) -> dict[str, object]:
        """``GET /subscriptionInfo`` in the result shape of ``version`` ("1" or "2")."""
        with self._transaction() as now:
            device = self._device_for(access_token, now)
            return {"slotsSubscriptionStatus": note.subscription_status(device, version)}

    def deregister(
        self, access_token: str | None, model_id: str | None = None, serial: str | None = None
    ) -> None:
        """``DELETE /registration``, or the legacy path when ``model_id`` and ``serial`` are given."""
        with self._transaction() as now:
            device = self._device_for(access_token, now)
            legacy = model_id is not None or serial is not None
            if legacy and (model_id != device.model_id or serial != device.serial):
                raise BadRequest("The model and serial in the path are not those of the authorized device")
            self._deregister(device, now)

    def order_info(self, access_token: str | None, instance_id: str) -> dict[str, object]:
        """``GET /getOrderInfo/{id}``; an unknown order or another registration's → 404."""
        with self._transaction() as now:
            device = self._device_for(access_token, now)
            order = self._orders.get(instance_id)
            if order is None or order.registration_id != device.registration_id:
                raise NotFound(f"Unknown order {instance_id}")
            eta = order.estimated_delivery_date
            item = {
                "asin": order.product.asin,
                # Unknown before the order is placed (resolution flow): null, as DRS may send it.
                "expectedDeliveryDate": to_iso(eta) if eta else None,
                "quantity": order.product.quantity,
                "slotId": order.slot_id,
                "status": ORDER_INFO_STATUS[order.state],
            }
            return {"orderInfoData": {"instanceId": order.instance_id, "orderItems": [item]}}

    def cancel_test_orders(self, access_token: str | None, slot_id: str | None = None) -> dict[str, object]:
        """``DELETE /testOrders[/slots/{slotId}]``: cancel the open test orders of one or every slot."""
        with self._transaction() as now:
            device = self._device_for(access_token, now)
            if slot_id is not None:
                self._slot(device, slot_id)
            if not device.is_test_device:
                raise BadRequest("Test orders can only be cancelled on a test device")
            slot_ids = [slot_id] if slot_id is not None else list(device.slots)
            for each in slot_ids:
                order = self._open_orders.get((device.registration_id, each))
                if order is not None:
                    self._close_order(order, OrderState.CANCELLED, now, reason="test order cancelled")
                    if self._channel.config.test_cancel_notifications:
                        self._notify_order(note.ORDER_CANCELLED, order, now)
            return {
                "slotOrderStatuses": [
                    {"slotId": each, "orderStatus": "NO_ORDER_IN_PROGRESS"} for each in slot_ids
                ]
            }

    # ------------------------------------------------------------------ LWA
    def exchange_token(self, form: Mapping[str, str]) -> dict[str, object]:
        """``POST /auth/o2/token`` (authorization_code or refresh_token grant) or raise ``OAuthError``."""
        with self._transaction() as now:
            grant_type = form.get("grant_type", "")
            if not grant_type:
                raise OAuthError(400, "invalid_request", "grant_type is required")
            if grant_type not in ("authorization_code", "refresh_token"):
                raise OAuthError(400, "unsupported_grant_type", "Only authorization_code and refresh_token")
            if form.get("client_id") != self.client_id:
                raise OAuthError(401, "invalid_client", "Unknown client")
            secret = form.get("client_secret")
            if secret is not None and not secrets.compare_digest(
                secret.encode(), self._client_secret.encode()
            ):
                raise OAuthError(401, "invalid_client", "Client authentication failed")
            if grant_type == "authorization_code":
                return self._exchange_code(form, now)
            return self._refresh_tokens(form, now)

    def token_info(self, access_token: str | None) -> dict[str, object]:
        """``GET /auth/o2/tokeninfo``: who a valid access token (device or app) belongs to."""
        with self._transaction() as now:
            if not access_token:
                raise OAuthError(400, "invalid_request", "access_token is required")
            grant = self._access.get(access_token)
            if grant is None or not grant.is_valid(now):
                raise OAuthError(400, "invalid_token", "The access token is invalid or has expired")
            # App tokens never expire here; report them as freshly refreshed ones.
            expires_in = (
                int((grant.expires_at - now).total_seconds())
                if grant.expires_at
                else int(ACCESS_TOKEN_LIFETIME.total_seconds())
            )
            return {
                "aud": self.client_id,
                "user_id": grant.customer_id,
                "app_id": self.app_id,
                "iss": LWA_ISSUER,
                "exp": expires_in,
                "iat": int(grant.issued_at.timestamp()),
            }

    def settings_device(self, access_token: str | None, exit_uri: str | None) -> Device:
        """The device whose drs-web settings page a valid device token opens; 400 otherwise."""
        with self._transaction() as now:
            device = self._device_for(access_token, now)
            if not exit_uri or not urlparse(exit_uri).scheme:
                raise BadRequest("exitUri must be an absolute URI with a scheme")
            return device

    def serial_for_token(self, access_token: str | None) -> str | None:
        """The serial a device token was issued for (valid or not), for the calls log only."""
        with self._lock:
            grant = self._access.get(access_token) if access_token else None
            if grant is None or grant.registration_id is None:
                return None
            return self._registrations[grant.registration_id].serial

    def serial_for_grant(self, form: Mapping[str, str]) -> str | None:
        """The serial a token-endpoint request is about (from its code or refresh token), for the log."""
        with self._lock:
            code = self._codes.get(form.get("code", ""))
            if code is not None:
                return code.serial
            refresh = self._refresh.get(form.get("refresh_token", ""))
            return self._registrations[refresh.registration_id].serial if refresh else None

    # ------------------------------------------------------------------ control (/__sim/)
    def create_customer(self, name: str | None = None, order_issue: bool = False) -> dict[str, object]:
        """A new Amazon customer and a never-expiring LWA access token of the companion app for them."""
        with self._transaction() as now:
            customer = Customer(
                customer_id=_new_customer_id(),
                name=name or f"Customer {len(self._customers) + 1}",
                order_issue=order_issue,
            )
            self._customers[customer.customer_id] = customer
            app_token = _new_secret("Atza|")
            self._access[app_token] = AccessGrant(customer.customer_id, issued_at=now, expires_at=None)
            return {**customer.to_json(), "appAccessToken": app_token}

    def set_order_issue(self, customer_id: str, order_issue: bool) -> dict[str, object]:
        """Switch the resolution-flow trouble for the customer's new orders on or off."""
        with self._transaction():
            customer = self._customer(customer_id)
            customer.order_issue = order_issue
            return customer.to_json()

    def remove_maker(self, customer_id: str) -> list[str]:
        """The customer removes the maker in "Manage Login with Amazon": all their devices deregister."""
        with self._transaction() as now:
            self._customer(customer_id)
            devices = [d for d in self._devices.values() if d.customer_id == customer_id and d.active]
            for device in devices:
                self._deregister(device, now)
            return [device.serial for device in devices]

    def authorize(
        self,
        *,
        customer_id: str,
        model_id: str,
        serial: str,
        slots: Mapping[str, Product | None],
        is_test_device: bool = False,
        code_challenge: str | None = None,
        redirect_uri: str | None = None,
    ) -> dict[str, object]:
        """The customer's consent in the browser: an authorization code for the device, valid 5 min."""
        with self._transaction() as now:
            self._customer(customer_id)
            code = _new_code()
            self._codes[code] = AuthorizationCode(
                customer_id=customer_id,
                model_id=model_id,
                serial=serial,
                slots=dict(slots),
                is_test_device=is_test_device,
                redirect_uri=redirect_uri or self.redirect_uri,
                code_challenge=code_challenge,
                issued_at=now,
            )
            return {"authorizationCode": code, "redirectUri": redirect_uri or self.redirect_uri}

    def sign_in(self, *, customer_id: str, redirect_uri: str, code_challenge: str | None) -> str:
        """The customer signs in on the LWA page (scope ``profile``): a code for an app token, valid 5 min."""
        with self._transaction() as now:
            self._customer(customer_id)
            code = _new_code()
            self._sign_in_codes[code] = SignInCode(customer_id, redirect_uri, code_challenge, now)
            return code

    def customers(self) -> list[dict[str, object]]:
        """Every customer, in creation order (the LWA page lets one of them sign in)."""
        with self._lock:
            return [customer.to_json() for customer in self._customers.values()]

    def set_subscription(self, serial: str, slots: Mapping[str, Product | None]) -> dict[str, object]:
        """The customer picks (or clears, with None) products for the named slots only."""
        with self._transaction() as now:
            device = self._active_device(serial)
            unknown = sorted(set(slots) - set(device.slots))
            if unknown:
                raise NotFound(f"Unknown slot {unknown[0]} on device {serial}")
            device.slots.update(slots)
            self._notify(note.SUBSCRIPTION_CHANGED, device, now)
            return self._device_json(device)

    def deregister_device(self, serial: str) -> dict[str, object]:
        """Deregistration from Amazon's side (the customer on Amazon.com, or customer service)."""
        with self._transaction() as now:
            device = self._active_device(serial)
            self._deregister(device, now)
            return self._device_json(device)

    def device_view(self, serial: str) -> dict[str, object]:
        """The latest registration of a serial, its orders and its latest reports (for inspection)."""
        with self._transaction():
            device = self._devices.get(serial)
            if device is None:
                raise NotFound(f"Unknown device {serial}")
            return self._device_json(device)

    def advance(self, seconds: float) -> datetime:
        """Move the simulated clock forward, then fire whatever became due. ``0`` just reads it."""
        if seconds < 0:
            raise BadRequest("advanceSeconds must not be negative")
        with self._transaction():
            if seconds:
                self.clock.advance(seconds)
            return self._catch_up()

    def fire_due(self) -> datetime:
        """Fire what became due after someone moved the shared clock directly (no HTTP call)."""
        with self._transaction() as now:
            return now

    def set_fault(
        self, endpoint: str | None, rate: float, status: int = 500, latency_ms: float = 0.0, seed: int = 0
    ) -> list[dict[str, object]]:
        """Replace the fault rule of ``endpoint`` (None: every DRS/LWA route); ``rate`` 0 removes it."""
        with self._lock:
            self._faults.set_rule(endpoint, rate, status=status, latency_ms=latency_ms, seed=seed)
            return self._faults.to_json()

    def fault_rules(self) -> list[dict[str, object]]:
        with self._lock:
            return self._faults.to_json()

    def pick_fault(self, operation: str) -> Fault | None:
        """Whether this call of ``operation`` is faulted (a seeded draw; the caller does the waiting)."""
        with self._lock:
            return self._faults.pick(operation)

    def configure_notifications(self, **changes: object) -> dict[str, object]:
        """Change only the named delivery settings (version, duplicate_rate, reorder_rate, ...)."""
        with self._lock:
            return self._channel.configure(**changes).to_json()

    def configure_world(self, **changes: object) -> dict[str, object]:
        """Change only the named world settings (``world.JSON_NAMES`` / ``CHANNEL_NAMES`` values)."""
        with self._lock:
            channel = {k: changes.pop(k) for k in ("duplicate_rate", "reorder_rate") if k in changes}
            if "seed" in changes:
                channel["seed"] = changes["seed"]
            self._world.configure(**changes)
            if channel:
                self._channel.configure(**channel)
            return self._world.to_json(self._channel.config.to_json())

    def lost_notifications(self) -> list[dict[str, object]]:
        """The notifications the world lost: ``{"seq", "at", "message"}``, never published."""
        with self._transaction():
            return list(self._lost)

    def delay_order(self, instance_id: str, days: float) -> dict[str, object]:
        """Make an order's parcel arrive ``days`` after its estimated delivery date (negative: early)."""
        with self._transaction():
            order = self._orders.get(instance_id)
            if order is None:
                raise NotFound(f"Unknown order {instance_id}")
            if not order.state.is_open or order.is_test:
                what = "a test order (never shipped)" if order.is_test else order.state.value
                raise Conflict(f"Order {instance_id} is {what}: no parcel to delay")
            if not -DELIVERY_TIME.days <= days <= MAX_DELAY_DAYS:
                raise BadRequest(f"days must be between {-DELIVERY_TIME.days} and {MAX_DELAY_DAYS}")
            order.delivery_offset = timedelta(days=days)
            return order.to_json()

    def orders(self) -> list[dict[str, object]]:
        """Every order so far, open or closed, in placement order (what Amazon knows of them)."""
        with self._transaction():
            return [order.to_json() for order in self._orders.values()]

    def order_action(self, instance_id: str, action: str) -> dict[str, object]:
        """Drive an order as Amazon or the customer would: ship, deliver, cancel, resolve or expire."""
        with self._transaction() as now:
            order = self._orders.get(instance_id)
            if order is None:
                raise NotFound(f"Unknown order {instance_id}")
            if action not in ORDER_ACTIONS:
                raise NotFound(f"Unknown order action {action}")
            state = order.state
            if action == "ship" and state is OrderState.PLACED:
                order.state = OrderState.SHIPPED
                self._notify_order(note.ITEM_SHIPPED, order, now)
            elif action == "deliver" and state in (OrderState.PLACED, OrderState.SHIPPED):
                self._close_order(order, OrderState.DELIVERED, now)
            elif action == "cancel" and self._customer_may_cancel(order, now):
                self._close_order(order, OrderState.CANCELLED, now, reason="cancelled by customer")
                self._notify_order(note.ORDER_CANCELLED, order, now)
            elif action == "resolve" and state is OrderState.TROUBLED:
                order.state, order.placed_at = OrderState.PLACED, now
                self._place(order)
                self._notify_order(note.ORDER_PLACED, order, now)
            elif action == "expire" and state is OrderState.TROUBLED:
                self._expire(order, now)
            else:
                raise Conflict(f"Order {instance_id} is {state.value}: {action} is not possible now")
            return order.to_json()

    def record_call(self, call: CallRecord) -> None:
        """Append a DRS/LWA call to the calls log (the record holds no token or secret)."""
        with self._lock:
            self._calls.append(call.to_json(len(self._calls) + 1, to_iso(self.clock.now())))

    def calls(self) -> list[dict[str, object]]:
        with self._lock:
            return list(self._calls)

    def notifications(self) -> list[dict[str, object]]:
        """Every delivery so far, after firing what the clock made due (it may have moved directly)."""
        with self._transaction():
            return list(self._channel.deliveries)

    def now(self) -> datetime:
        return self.clock.now()

    # ------------------------------------------------------------------ internals
    @contextmanager
    def _transaction(self) -> Iterator[datetime]:
        """Hold the lock, first catching up with the clock; publish what was delivered once released."""
        try:
            with self._lock:
                yield self._catch_up()
        finally:
            self._publish_pending()

    def _catch_up(self) -> datetime:
        now = self.clock.now()
        while (event := self._next_due_event(now)) is not None:
            event()
        if now > self._seen_now:
            self._channel.release_held(now)
            self._seen_now = now
        return now

    def _next_due_event(self, now: datetime) -> Callable[[], None] | None:
        """The earliest thing due at ``now``: a delayed notification (first on ties), delivery or expiry."""
        best_time = self._channel.next_delayed_due()
        best: Callable[[], None] | None = None
        if best_time is not None and best_time <= now:
            best = partial(self._channel.release_next_delayed, now)
        else:
            best_time = None
        for order in self._open_orders.values():
            if order.state is OrderState.TROUBLED:
                when, action = (
                    order.resolution_deadline,
                    partial(self._expire, order, order.resolution_deadline),
                )
            elif order.is_test:
                continue  # test orders are never delivered by the clock
            else:
                arrival = order.arrives_at
                assert arrival is not None
                when, action = arrival, partial(self._close_order, order, OrderState.DELIVERED, arrival)
            if when <= now and (best_time is None or when < best_time):
                best_time, best = when, action
        return best

    def _publish_pending(self) -> None:
        """Hand deliveries to the publisher, in order, outside the state lock.

        Whoever holds the publish lock drains the outbox for everyone; a thread that finds it taken
        leaves, and the holder re-checks after releasing, so nothing is left behind or reordered.
        """
        while self._publish_lock.acquire(blocking=False):
            try:
                while True:
                    with self._lock:
                        batch = self._channel.take_outbox()
                    if not batch:
                        break
                    for envelope in batch:
                        self._hand_over(envelope)
            finally:
                self._publish_lock.release()
            with self._lock:
                if not self._channel.has_outbox():
                    return

    def _hand_over(self, envelope: dict[str, object]) -> None:
        if self._publisher is None:
            return
        try:
            self._publisher.publish(envelope)
        except Exception:
            # Delivery is best-effort, as from a real topic; the log above keeps the message.
            logger.exception("notification publisher failed for MessageId %s", envelope.get("MessageId"))

    def _device_for(self, access_token: str | None, now: datetime) -> Device:
        if not access_token:
            raise TokenRejected(MISSING_TOKEN)
        grant = self._access.get(access_token)
        if grant is None or grant.registration_id is None or not grant.is_valid(now):
            raise TokenRejected(INVALID_TOKEN)
        return self._registrations[grant.registration_id]

    @staticmethod
    def _slot(device: Device, slot_id: str) -> Product | None:
        if slot_id not in device.slots:
            raise NotFound(f"Unknown slot {slot_id}")
        return device.slots[slot_id]

    def _customer(self, customer_id: str) -> Customer:
        customer = self._customers.get(customer_id)
        if customer is None:
            raise NotFound(f"Unknown customer {customer_id}")
        return customer

    def _active_device(self, serial: str) -> Device:
        device = self._devices.get(serial)
        if device is None or not device.active:
            raise NotFound(f"No registered device {serial}")
        return device

    def _exchange_code(self, form: Mapping[str, str], now: datetime) -> dict[str, object]:
        sign_in = self._sign_in_codes.get(form.get("code", ""))
        if sign_in is not None:
            return self._exchange_sign_in(sign_in, form, now)
        if not _CODE_SHAPE.fullmatch(form.get("code", "")):
            # LWA tells a request it cannot read (400 invalid_request) from a code it does not accept.
            raise OAuthError(400, "invalid_request", "The authorization code is missing or malformed")
        code = self._codes.get(form.get("code", ""))
        if code is None or code.used or code.is_expired(now):
            raise OAuthError(400, "invalid_grant", "The authorization code is invalid, expired or used")
        _check_code_proof(form, code.redirect_uri, code.code_challenge)
        code.used = True
        device = self._register(code, now)
        return self._issue_tokens(device, public_client=code.code_challenge is not None, now=now)

    def _exchange_sign_in(
        self, code: SignInCode, form: Mapping[str, str], now: datetime
    ) -> dict[str, object]:
        """A sign-in code → the companion app's access token for the customer (no device, no refresh)."""
        if code.used or code.is_expired(now):
            raise OAuthError(400, "invalid_grant", "The authorization code is invalid, expired or used")
        _check_code_proof(form, code.redirect_uri, code.code_challenge)
        code.used = True
        app_token = _new_secret("Atza|")
        # Like the tokens of POST /__sim/customers, app tokens do not expire in the simulator.
        self._access[app_token] = AccessGrant(code.customer_id, issued_at=now, expires_at=None)
        return {
            "access_token": app_token,
            "token_type": "bearer",
            "expires_in": int(ACCESS_TOKEN_LIFETIME.total_seconds()),
        }

    def _refresh_tokens(self, form: Mapping[str, str], now: datetime) -> dict[str, object]:
        refresh_token = form.get("refresh_token", "")
        grant = self._refresh.get(refresh_token)
        if grant is None or grant.revoked:
            raise OAuthError(400, "invalid_grant", "The refresh token is invalid or revoked")
        if not grant.public_client and form.get("client_secret") is None:
            raise OAuthError(401, "invalid_client", "client_secret is required")
        device = self._registrations[grant.registration_id]
        access_token = self._new_access_token(device, now)
        # LWA refresh tokens do not rotate: the same one comes back.
        return _token_answer(access_token, refresh_token)

    def _register(self, code: AuthorizationCode, now: datetime) -> Device:
        previous = self._devices.get(code.serial)
        if previous is not None and previous.active:
            self._deregister(previous, now)
        device = Device(
            registration_id=next(self._registration_ids),
            serial=code.serial,
            model_id=code.model_id,
            customer_id=code.customer_id,
            lwa_client_id=self.client_id,
            is_test_device=code.is_test_device,
            slots=dict(code.slots),
            registered_at=now,
        )
        self._devices[device.serial] = device
        self._registrations[device.registration_id] = device
        self._tokens_of[device.registration_id] = []
        self._notify(note.DEVICE_REGISTERED, device, now)
        self._notify(note.SUBSCRIPTION_CHANGED, device, now)
        return device

    def _issue_tokens(self, device: Device, *, public_client: bool, now: datetime) -> dict[str, object]:
        access_token = self._new_access_token(device, now)
        refresh_token = _new_secret("Atzr|")
        self._refresh[refresh_token] = RefreshGrant(device.registration_id, public_client=public_client)
        self._tokens_of[device.registration_id].append(refresh_token)
        return _token_answer(access_token, refresh_token)

    def _new_access_token(self, device: Device, now: datetime) -> str:
        access_token = _new_secret("Atza|")
        self._access[access_token] = AccessGrant(
            customer_id=device.customer_id,
            issued_at=now,
            expires_at=now + ACCESS_TOKEN_LIFETIME,
            registration_id=device.registration_id,
        )
        self._tokens_of[device.registration_id].append(access_token)
        return access_token

    def _deregister(self, device: Device, now: datetime) -> None:
        device.active = False
        device.deregistered_at = now
        for token in self._tokens_of.get(device.registration_id, []):
            grant = self._access.get(token) or self._refresh.get(token)
            if grant is not None:
                grant.revoked = True
        self._notify(note.DEVICE_DEREGISTERED, device, now)

    def _customer_may_cancel(self, order: Order, now: datetime) -> bool:
        if order.state is OrderState.TROUBLED:
            return True  # expired ones were already cancelled by the catch-up
        return (
            order.state is OrderState.PLACED
            and order.placed_at is not None
            and now <= order.placed_at + CUSTOMER_CANCEL_WINDOW
        )

    def _expire(self, order: Order, at: datetime) -> None:
        self._close_order(order, OrderState.CANCELLED, at, reason="resolution window expired")
        self._notify_order(note.ORDER_CANCELLED, order, at)

    def _place(self, order: Order) -> None:
        """The order is placed: the world decides when its parcel will really arrive."""
        if not order.is_test:
            order.delivery_offset = self._world.parcel_offset()

    def _close_order(self, order: Order, state: OrderState, at: datetime, reason: str | None = None) -> None:
        order.state, order.closed_at, order.cancel_reason = state, at, reason
        self._open_orders.pop((order.registration_id, order.slot_id), None)

    def _notify_order(self, notification_type: str, order: Order, at: datetime) -> None:
        device = self._registrations[order.registration_id]
        # Orders of a replaced or deregistered registration move on silently: the maker no longer
        # follows that device.
        if device.active:
            self._notify(notification_type, device, at, order)

    def _notify(
        self, notification_type: str, device: Device, at: datetime, order: Order | None = None
    ) -> None:
        message = note.build_message(
            notification_type,
            client_id=self.client_id,
            device=device,
            at=at,
            version=self._channel.config.version,
            order=order,
        )
        held = self._world.notification_fate()
        if held is None:
            self._lost.append({"seq": len(self._lost) + 1, "at": to_iso(at), "message": message})
            return
        self._channel.emit(message, at=at, now=self.clock.now(), hold=held)

    def _device_json(self, device: Device) -> dict[str, object]:
        orders = [o for o in self._orders.values() if o.registration_id == device.registration_id]
        return {
            "serial": device.serial,
            "modelId": device.model_id,
            "customerId": device.customer_id,
            "lwaClientId": device.lwa_client_id,
            "isTestDevice": device.is_test_device,
            "registered": device.active,
            "registeredAt": to_iso(device.registered_at),
            "deregisteredAt": to_iso(device.deregistered_at) if device.deregistered_at else None,
            "slots": {
                slot_id: product.to_json() if product else None for slot_id, product in device.slots.items()
            },
            "orders": [order.to_json() for order in orders],
            "lastDeviceStatus": device.last_device_status,
            "slotReports": device.slot_reports,
        }


def _checked_object(report: object, *, required: tuple[str, ...]) -> dict[str, object]:
    """A DRS body must be a JSON object with exactly the documented fields."""
    if isinstance(report, InvalidBody):
        raise BadRequest(report.reason)
    if not isinstance(report, dict):
        raise BadRequest("The body must be a JSON object")
    missing = [name for name in required if name not in report]
    if missing:
        raise BadRequest(f"Missing field {missing[0]}")
    if set(report) - set(required):
        # The client's field names are not echoed: a 400 message must not mention a token by accident.
        raise BadRequest(f"Unknown field in the body; the documented ones are {', '.join(required)}")
    return report


def _check_quantity(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadRequest(f"{name} must be a number >= 0")


def _check_date(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be an ISO-8601 date-time")
    try:
        parse_iso(value)
    except ValueError:
        raise BadRequest(f"{name} must be an ISO-8601 date-time") from None


def _token_answer(access_token: str, refresh_token: str) -> dict[str, object]:
    return {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "bearer",
        "expires_in": int(ACCESS_TOKEN_LIFETIME.total_seconds()),
    }


def _check_code_proof(form: Mapping[str, str], redirect_uri: str, code_challenge: str | None) -> None:
    """The token request proves it holds the code: same redirect URI, and the PKCE verifier or the secret."""
    if form.get("redirect_uri") != redirect_uri:
        raise OAuthError(400, "invalid_grant", "redirect_uri does not match the authorization request")
    verifier = form.get("code_verifier")
    if code_challenge is not None:
        if not verifier or _s256(verifier) != code_challenge:
            raise OAuthError(400, "invalid_grant", "code_verifier does not match the code challenge")
    elif verifier is not None:
        raise OAuthError(400, "invalid_grant", "code_verifier given for a code issued without a challenge")
    elif form.get("client_secret") is None:
        raise OAuthError(401, "invalid_client", "client_secret is required")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(48)


def _new_code() -> str:
    return "AN" + "".join(secrets.choice(string.ascii_letters) for _ in range(18))


def _new_customer_id() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "amzn1.account.A" + "".join(secrets.choice(alphabet) for _ in range(27))


def _new_instance_id() -> str:
    return "amzn1.dash.v2.o." + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
