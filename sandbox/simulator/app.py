"""The simulator's HTTP face: DRS, LWA, the drs-web settings page and the ``/__sim/`` control routes.

Only HTTP concerns live here (routing, version headers, bearer extraction, body decoding, faults, the
calls log); every rule of the simulated Amazon is in ``state.Simulator``.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from drs_core.clock import to_iso

from .faults import FAULT_STATUSES, LWA_OPERATIONS, OPERATIONS
from .records import CallRecord, Product
from .signin import sign_in_answer, sign_in_page
from .state import (
    MAX_DELAY_DAYS,
    ORDER_ACTIONS,
    BadRequest,
    InvalidBody,
    OAuthError,
    Simulator,
    SimulatorError,
)
from .world import CHANNEL_NAMES, JSON_NAMES

logger = logging.getLogger(__name__)

TYPE_PREFIX = "com.amazon.dash.replenishment."
TYPE_VERSION = "x-amzn-type-version"
ACCEPT_TYPE = "x-amzn-accept-type"
_IDENTIFIER = re.compile(r"^[A-Za-z0-9+_-]{1,64}$")
_CODE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_FAULT_MESSAGES = {
    400: "Simulated bad request",
    429: "Rate exceeded",
    500: "Internal server error",
    503: "Service unavailable",
}
_MAX_LATENCY_MS = 600_000
# DRS's error headers (docs/drs.md §2) and the type the simulator gives each injected fault status.
ERROR_TYPE = "x-amzn-ErrorType"
REQUEST_ID = "x-amzn-RequestId"
_FAULT_ERROR_TYPES = {
    400: "ValidationException",
    429: "ThrottlingException",
    500: "InternalFailure",
    503: "ServiceUnavailableException",
}


@dataclass(frozen=True)
class DrsRoute:
    """One DRS call: the request schema it accepts and the result schemas it can answer in."""

    operation: str
    input_type: str
    result_types: tuple[str, ...]


def _drs_route(operation: str, input_name: str, *result_names: str) -> DrsRoute:
    return DrsRoute(operation, TYPE_PREFIX + input_name, tuple(TYPE_PREFIX + name for name in result_names))


REPLENISH = _drs_route("replenish", "DrsReplenishInput@1.0", "DrsReplenishResult@1.0")
SLOT_STATUS = _drs_route("slotStatus", "DrsSlotStatusInput@1.0", "DrsSlotStatusResult@1.0")
DEVICE_STATUS = _drs_route("deviceStatus", "DrsDeviceStatusInput@1.0", "DrsDeviceStatusResult@1.0")
SUBSCRIPTION_INFO = _drs_route(
    "subscriptionInfo",
    "DrsSubscriptionInfoInput@1.0",
    "DrsSubscriptionInfoResult@1.0",
    "DrsSubscriptionInfoResult@2.0",
)
DEREGISTRATION = _drs_route("deregistration", "DrsDeregisterInput@2.0", "DrsDeregisterResult@1.0")
LEGACY_DEREGISTRATION = _drs_route("deregistration", "DrsDeregisterInput@1.0", "DrsDeregisterResult@1.0")
ORDER_INFO = _drs_route("getOrderInfo", "DrsOrderInfoInput@1.0", "DrsOrderInfoResult@1.0")
CANCEL_TEST_ORDERS = _drs_route(
    "cancelTestOrders", "DrsCancelTestOrdersInput@1.0", "DrsCancelTestOrdersResult@1.0"
)

URL_MAP = Map(
    [
        # DRS
        Rule("/replenish/<slot_id>", methods=["POST"], endpoint="replenish"),
        Rule("/slotStatus/<slot_id>", methods=["POST"], endpoint="slot_status"),
        Rule("/deviceStatus", methods=["POST"], endpoint="device_status"),
        Rule("/subscriptionInfo", methods=["GET"], endpoint="subscription_info"),
        Rule("/registration", methods=["DELETE"], endpoint="deregister"),
        Rule(
            "/deviceModels/<model_id>/devices/<serial>/registration",
            methods=["DELETE"],
            endpoint="deregister_legacy",
        ),
        Rule("/getOrderInfo/<instance_id>", methods=["GET"], endpoint="order_info"),
        Rule("/testOrders/slots/<slot_id>", methods=["DELETE"], endpoint="cancel_test_orders"),
        Rule("/testOrders", methods=["DELETE"], endpoint="cancel_test_orders"),
        # LWA and drs-web
        Rule("/auth/o2/token", methods=["POST"], endpoint="token"),
        Rule("/auth/o2/token", methods=["OPTIONS"], endpoint="token_preflight"),
        Rule("/ap/oa", methods=["GET", "POST"], endpoint="sign_in"),
        Rule("/auth/o2/tokeninfo", methods=["GET"], endpoint="tokeninfo"),
        Rule("/settings", methods=["GET"], endpoint="settings"),
        # control
        Rule("/__sim/customers", methods=["POST"], endpoint="sim_create_customer"),
        Rule("/__sim/customers/<customer_id>", methods=["PATCH"], endpoint="sim_patch_customer"),
        Rule("/__sim/customers/<customer_id>/lwa", methods=["DELETE"], endpoint="sim_remove_maker"),
        Rule("/__sim/authorize", methods=["POST"], endpoint="sim_authorize"),
        Rule("/__sim/devices/<serial>", methods=["GET"], endpoint="sim_device"),
        Rule("/__sim/devices/<serial>", methods=["DELETE"], endpoint="sim_deregister_device"),
        Rule("/__sim/devices/<serial>/subscription", methods=["PUT"], endpoint="sim_subscription"),
        Rule("/__sim/clock", methods=["POST"], endpoint="sim_clock"),
        Rule("/__sim/faults", methods=["GET", "POST"], endpoint="sim_faults"),
        Rule("/__sim/notifications/config", methods=["GET", "POST"], endpoint="sim_notification_config"),
        Rule(
            f"/__sim/orders/<instance_id>/<any({', '.join(ORDER_ACTIONS)}):action>",
            methods=["POST"],
            endpoint="sim_order_action",
        ),
        Rule("/__sim/orders/<instance_id>/delay", methods=["POST"], endpoint="sim_order_delay"),
        Rule("/__sim/orders", methods=["GET"], endpoint="sim_orders"),
        Rule("/__sim/world", methods=["GET", "POST"], endpoint="sim_world"),
        Rule("/__sim/notifications/lost", methods=["GET"], endpoint="sim_lost_notifications"),
        Rule("/__sim/calls", methods=["GET"], endpoint="sim_calls"),
        Rule("/__sim/notifications", methods=["GET"], endpoint="sim_notifications"),
    ],
    strict_slashes=False,
    merge_slashes=False,
)


class SimulatorApp:
    """WSGI application serving one ``Simulator``."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        """Route one request; never lets an exception escape as an HTML page."""
        adapter = URL_MAP.bind_to_environ(request.environ)
        try:
            endpoint, values = adapter.match()
        except MethodNotAllowed:
            return _json_response(405, {"message": "Method not allowed"})
        except NotFound:
            return _json_response(404, {"message": "Not found"})
        except HTTPException as exc:
            return _json_response(exc.code or 400, {"message": exc.description or "Bad request"})
        handler: Callable[..., Response] = getattr(self, f"_on_{endpoint}")
        try:
            return handler(request, **values)
        except Exception:
            logger.exception("simulator failed on %s %s", request.method, request.path)
            return _json_response(500, {"message": "Internal simulator error"})

    # ------------------------------------------------------------------ DRS routes
    def _on_replenish(self, request: Request, slot_id: str) -> Response:
        def call(token: str | None, _result: str, record: CallRecord) -> object:
            detail_code, instance_id = self.simulator.replenish(token, slot_id)
            record.detail_code, record.instance_id = detail_code, instance_id
            return {"eventInstanceId": instance_id, "detailCode": detail_code}

        return self._drs(request, REPLENISH, call, slot_id=slot_id)

    def _on_slot_status(self, request: Request, slot_id: str) -> Response:
        def call(token: str | None, _result: str, _record: CallRecord) -> object:
            self.simulator.slot_status(token, slot_id, _json_document(request))
            return None

        return self._drs(request, SLOT_STATUS, call, slot_id=slot_id)

    def _on_device_status(self, request: Request) -> Response:
        def call(token: str | None, _result: str, _record: CallRecord) -> object:
            self.simulator.device_status(token, _json_document(request))
            return None

        return self._drs(request, DEVICE_STATUS, call)

    def _on_subscription_info(self, request: Request) -> Response:
        def call(token: str | None, result: str, _record: CallRecord) -> object:
            return self.simulator.subscription_info(token, "2" if result.endswith("@2.0") else "1")

        return self._drs(request, SUBSCRIPTION_INFO, call)

    def _on_deregister(self, request: Request) -> Response:
        def call(token: str | None, _result: str, _record: CallRecord) -> object:
            self.simulator.deregister(token)
            return {}

        return self._drs(request, DEREGISTRATION, call)

    def _on_deregister_legacy(self, request: Request, model_id: str, serial: str) -> Response:
        def call(token: str | None, _result: str, _record: CallRecord) -> object:
            self.simulator.deregister(token, model_id=model_id, serial=serial)
            return {}

        return self._drs(request, LEGACY_DEREGISTRATION, call)

    def _on_order_info(self, request: Request, instance_id: str) -> Response:
        def call(token: str | None, _result: str, _record: CallRecord) -> object:
            return self.simulator.order_info(token, instance_id)

        return self._drs(request, ORDER_INFO, call)

    def _on_cancel_test_orders(self, request: Request, slot_id: str | None = None) -> Response:
        def call(token: str | None, _result: str, _record: CallRecord) -> object:
            return self.simulator.cancel_test_orders(token, slot_id)

        return self._drs(request, CANCEL_TEST_ORDERS, call, slot_id=slot_id)

    def _drs(
        self,
        request: Request,
        route: DrsRoute,
        call: Callable[[str | None, str, CallRecord], object],
        slot_id: str | None = None,
    ) -> Response:
        """The DRS pipeline: fault, version headers, then the call (token, slot, route rules)."""
        token = _bearer_token(request)
        record = CallRecord(
            route.operation,
            request.method,
            request.path,
            serial=self.simulator.serial_for_token(token),
            slot_id=slot_id,
        )
        response = self._fault(route.operation, record)
        if response is None:
            try:
                result_type = _check_versions(request, route)
                body = call(token, result_type, record)
                response = _json_response(200, body, headers={TYPE_VERSION: result_type})
            except SimulatorError as exc:
                response = _drs_error(exc.status, exc.error_type, exc.message)
        record.status = response.status_code
        self.simulator.record_call(record)
        return response

    # ------------------------------------------------------------------ LWA and drs-web
    def _on_token(self, request: Request) -> Response:
        form = request.form.to_dict() if request.mimetype == "application/x-www-form-urlencoded" else None
        record = CallRecord("token", request.method, request.path)
        if form is not None:
            record.serial = self.simulator.serial_for_grant(form)
        response = self._fault("token", record)
        if response is None:
            try:
                if form is None:
                    raise OAuthError(
                        400, "invalid_request", "The body must be application/x-www-form-urlencoded"
                    )
                answer = self.simulator.exchange_token(form)
                response = _json_response(200, answer, headers=_NO_STORE)
            except OAuthError as exc:
                response = _oauth_error(exc.status, exc.error, exc.description)
        record.status = response.status_code
        self.simulator.record_call(record)
        response.headers.update(_TOKEN_CORS)
        return response

    def _on_token_preflight(self, _request: Request) -> Response:
        # A browser app (PKCE public client) calls the token endpoint from its own origin.
        return Response(status=204, headers={**_TOKEN_CORS, **_TOKEN_PREFLIGHT})

    def _on_sign_in(self, request: Request) -> Response:
        if request.method == "POST":
            return sign_in_answer(self.simulator, request.form)
        return sign_in_page(self.simulator, request.args)

    def _on_tokeninfo(self, request: Request) -> Response:
        token = request.args.get("access_token")
        record = CallRecord(
            "tokeninfo", request.method, request.path, serial=self.simulator.serial_for_token(token)
        )
        response = self._fault("tokeninfo", record)
        if response is None:
            try:
                response = _json_response(200, self.simulator.token_info(token), headers=_NO_STORE)
            except OAuthError as exc:
                response = _oauth_error(exc.status, exc.error, exc.description)
        record.status = response.status_code
        self.simulator.record_call(record)
        return response

    def _on_settings(self, request: Request) -> Response:
        token = request.args.get("access_token")
        record = CallRecord(
            "settings", request.method, request.path, serial=self.simulator.serial_for_token(token)
        )
        try:
            device = self.simulator.settings_device(token, request.args.get("exitUri"))
            response = Response(_settings_page(device.serial, device.slots, request.args["exitUri"]), 200)
        except SimulatorError as exc:
            response = Response(f"<!doctype html><p>{html.escape(exc.message)}</p>", exc.status)
        response.content_type = "text/html; charset=utf-8"
        record.status = response.status_code
        self.simulator.record_call(record)
        return response

    def _fault(self, operation: str, record: CallRecord) -> Response | None:
        """Apply the fault rule, if it picks this call: wait, then answer its status (200: carry on)."""
        fault = self.simulator.pick_fault(operation)
        if fault is None:
            return None
        record.fault = True
        if fault.latency_ms > 0:
            time.sleep(fault.latency_ms / 1000)  # real time: clients' timeouts are wall-clock too
        if fault.status == 200:
            return None
        if operation in LWA_OPERATIONS:
            error = "invalid_request" if fault.status == 400 else "server_error"
            return _oauth_error(fault.status, error, _FAULT_MESSAGES[fault.status])
        return _drs_error(fault.status, _FAULT_ERROR_TYPES[fault.status], _FAULT_MESSAGES[fault.status])

    # ------------------------------------------------------------------ control routes
    def _on_sim_create_customer(self, request: Request) -> Response:
        return self._control(request, self._create_customer, allow_empty=True, status=201)

    def _create_customer(self, body: _Body) -> object:
        body.only("name", "orderIssue")
        return self.simulator.create_customer(
            name=body.string("name", required=False), order_issue=body.boolean("orderIssue", default=False)
        )

    def _on_sim_patch_customer(self, request: Request, customer_id: str) -> Response:
        def act(body: _Body) -> object:
            body.only("orderIssue")
            return self.simulator.set_order_issue(customer_id, body.boolean("orderIssue", required=True))

        return self._control(request, act)

    def _on_sim_remove_maker(self, request: Request, customer_id: str) -> Response:
        def act(_body: _Body) -> object:
            return {
                "customerId": customer_id,
                "deregisteredSerials": self.simulator.remove_maker(customer_id),
            }

        return self._control(request, act, allow_empty=True)

    def _on_sim_authorize(self, request: Request) -> Response:
        return self._control(request, self._authorize)

    def _authorize(self, body: _Body) -> object:
        body.only("customerId", "modelId", "serial", "slots", "isTestDevice", "pkce", "redirectUri")
        pkce = body.object("pkce", required=False)
        challenge = None
        if pkce is not None:
            pkce.only("codeChallenge")
            challenge = pkce.string("codeChallenge", required=True, pattern=_CODE_CHALLENGE)
        redirect_uri = body.string("redirectUri", required=False)
        if redirect_uri is not None and ":" not in redirect_uri:
            raise BadRequest("redirectUri must be an absolute URI")
        slots = _slot_products(body, allow_empty=False)
        return self.simulator.authorize(
            customer_id=body.string("customerId", required=True) or "",
            model_id=body.string("modelId", required=True, pattern=_IDENTIFIER) or "",
            serial=body.string("serial", required=True, pattern=_IDENTIFIER) or "",
            slots=slots,
            is_test_device=_test_device_flag(body.value("isTestDevice")),
            code_challenge=challenge,
            redirect_uri=redirect_uri,
        )

    def _on_sim_device(self, request: Request, serial: str) -> Response:
        return self._control(request, lambda _body: self.simulator.device_view(serial), allow_empty=True)

    def _on_sim_deregister_device(self, request: Request, serial: str) -> Response:
        return self._control(
            request, lambda _body: self.simulator.deregister_device(serial), allow_empty=True
        )

    def _on_sim_subscription(self, request: Request, serial: str) -> Response:
        def act(body: _Body) -> object:
            body.only("slots")
            return self.simulator.set_subscription(serial, _slot_products(body, allow_empty=True))

        return self._control(request, act)

    def _on_sim_clock(self, request: Request) -> Response:
        def act(body: _Body) -> object:
            body.only("advanceSeconds")
            seconds = body.number("advanceSeconds", required=True, minimum=0)
            return {"now": to_iso(self.simulator.advance(seconds or 0))}

        return self._control(request, act)

    def _on_sim_faults(self, request: Request) -> Response:
        if request.method == "GET":
            return _json_response(200, {"faults": self.simulator.fault_rules()})

        def act(body: _Body) -> object:
            body.only("endpoint", "status", "rate", "latencyMs", "seed")
            endpoint = body.string("endpoint", required=False)
            if endpoint is not None and endpoint not in OPERATIONS:
                raise BadRequest(f"endpoint must be one of {', '.join(sorted(OPERATIONS))}")
            status = body.integer("status", required=False)
            if status is not None and status not in FAULT_STATUSES:
                raise BadRequest(f"status must be one of {sorted(FAULT_STATUSES)}")
            rules = self.simulator.set_fault(
                endpoint,
                rate=body.number("rate", required=True, minimum=0, maximum=1) or 0.0,
                status=status if status is not None else 500,
                latency_ms=body.number("latencyMs", required=False, minimum=0, maximum=_MAX_LATENCY_MS)
                or 0.0,
                seed=body.integer("seed", required=False) or 0,
            )
            return {"faults": rules}

        return self._control(request, act)

    def _on_sim_notification_config(self, request: Request) -> Response:
        if request.method == "GET":
            return _json_response(200, self.simulator.configure_notifications())

        def act(body: _Body) -> object:
            body.only(
                "version", "duplicateRate", "reorderRate", "delaySeconds", "seed", "testCancelNotifications"
            )
            changes: dict[str, object] = {}
            if body.has("version"):
                version = body.value("version")
                if version not in ("1", "2"):
                    raise BadRequest('version must be "1" or "2"')
                changes["version"] = version
            for field, name, maximum in (
                ("duplicateRate", "duplicate_rate", 1),
                ("reorderRate", "reorder_rate", 1),
                ("delaySeconds", "delay_seconds", None),
            ):
                if body.has(field):
                    changes[name] = body.number(field, required=True, minimum=0, maximum=maximum)
            if body.has("seed"):
                changes["seed"] = body.integer("seed", required=True)
            if body.has("testCancelNotifications"):
                changes["test_cancel_notifications"] = body.boolean("testCancelNotifications", required=True)
            return self.simulator.configure_notifications(**changes)

        return self._control(request, act)

    def _on_sim_order_action(self, request: Request, instance_id: str, action: str) -> Response:
        return self._control(
            request, lambda _body: self.simulator.order_action(instance_id, action), allow_empty=True
        )

    def _on_sim_order_delay(self, request: Request, instance_id: str) -> Response:
        def act(body: _Body) -> object:
            body.only("days")
            days = body.number("days", required=True, minimum=-3, maximum=MAX_DELAY_DAYS)
            return self.simulator.delay_order(instance_id, days or 0)

        return self._control(request, act)

    def _on_sim_orders(self, _request: Request) -> Response:
        return _json_response(200, {"orders": self.simulator.orders()})

    def _on_sim_world(self, request: Request) -> Response:
        if request.method == "GET":
            return _json_response(200, self.simulator.configure_world())

        def act(body: _Body) -> object:
            body.only(*JSON_NAMES, *CHANNEL_NAMES)
            changes: dict[str, object] = {}
            for field, name in {**JSON_NAMES, **CHANNEL_NAMES}.items():
                if not body.has(field):
                    continue
                if field == "seed":
                    changes[name] = body.integer(field, required=True)
                elif field == "maxLateDays":
                    changes[name] = body.integer(field, required=True)
                    if not 1 <= int(changes[name]) <= MAX_DELAY_DAYS:  # type: ignore[call-overload]
                        raise BadRequest(f"maxLateDays must be between 1 and {MAX_DELAY_DAYS}")
                elif field == "maxNotificationDelayHours":
                    changes[name] = body.number(field, required=True, minimum=1, maximum=7 * 24)
                else:
                    changes[name] = body.number(field, required=True, minimum=0, maximum=1)
            return self.simulator.configure_world(**changes)

        return self._control(request, act)

    def _on_sim_lost_notifications(self, _request: Request) -> Response:
        return _json_response(200, {"notifications": self.simulator.lost_notifications()})

    def _on_sim_calls(self, _request: Request) -> Response:
        return _json_response(200, {"calls": self.simulator.calls()})

    def _on_sim_notifications(self, _request: Request) -> Response:
        return _json_response(200, {"notifications": self.simulator.notifications()})

    @staticmethod
    def _control(
        request: Request, act: Callable[[_Body], object], *, allow_empty: bool = False, status: int = 200
    ) -> Response:
        try:
            body = _Body(_control_body(request, allow_empty))
            return _json_response(status, act(body))
        except SimulatorError as exc:
            return _json_response(exc.status, {"message": exc.message})


class _Body:
    """Typed access to a control-route JSON object; every problem is a 400 naming the field."""

    def __init__(self, fields: dict[str, object], where: str = "") -> None:
        self._fields = fields
        self._where = where

    def only(self, *names: str) -> None:
        unknown = sorted(set(self._fields) - set(names))
        if unknown:
            raise BadRequest(f"Unknown field {self._where}{unknown[0]}")

    def names(self) -> list[str]:
        return list(self._fields)

    def has(self, name: str) -> bool:
        return name in self._fields

    def value(self, name: str) -> object:
        return self._fields.get(name)

    def _get(self, name: str, required: bool) -> object:
        value = self._fields.get(name)
        if value is None and required:
            raise BadRequest(f"Missing field {self._where}{name}")
        return value

    def string(self, name: str, *, required: bool, pattern: re.Pattern[str] | None = None) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value or (pattern and not pattern.match(value)):
            raise BadRequest(f"Invalid {self._where}{name}")
        return value

    def boolean(self, name: str, *, required: bool = False, default: bool = False) -> bool:
        value = self._get(name, required)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise BadRequest(f"{self._where}{name} must be true or false")
        return value

    def number(
        self, name: str, *, required: bool, minimum: float | None = None, maximum: float | None = None
    ) -> float | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"{self._where}{name} must be a number")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise BadRequest(f"{self._where}{name} is out of range")
        return value

    def integer(self, name: str, *, required: bool) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{self._where}{name} must be an integer")
        return value

    def object(self, name: str, *, required: bool) -> _Body | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise BadRequest(f"{self._where}{name} must be an object")
        return _Body(value, f"{self._where}{name}.")


def _slot_products(body: _Body, *, allow_empty: bool) -> dict[str, Product | None]:
    """``{"slots": {slotId: {asin, quantity, unit} | null}}`` as Products (None: nothing picked)."""
    slots = body.object("slots", required=True)
    assert slots is not None
    names = slots.names()
    if not names and not allow_empty:
        raise BadRequest("slots must name at least one slot")
    products: dict[str, Product | None] = {}
    for slot_id in names:
        if not slot_id or "/" in slot_id or len(slot_id) > 255:
            raise BadRequest("Invalid slot id in slots")
        product = slots.object(slot_id, required=False)
        if product is None:
            products[slot_id] = None
            continue
        product.only("asin", "quantity", "unit")
        quantity = product.number("quantity", required=True, minimum=0)
        if not quantity:
            raise BadRequest(f"slots.{slot_id}.quantity must be > 0")
        products[slot_id] = Product(
            asin=product.string("asin", required=True) or "",
            quantity=quantity,
            unit=product.string("unit", required=True) or "",
        )
    return products


def _test_device_flag(value: object) -> bool:
    # LWA's scope_data carries is_test_device as a boolean or as the string "true".
    if value is None or value in (False, "false"):
        return False
    if value in (True, "true"):
        return True
    raise BadRequest("isTestDevice must be true or false")


def _control_body(request: Request, allow_empty: bool) -> dict[str, object]:
    data = request.get_data()
    if not data.strip():
        if allow_empty:
            return {}
        raise BadRequest("A JSON object body is required")
    try:
        value = json.loads(data)
    except ValueError:
        raise BadRequest("The body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("The body must be a JSON object")
    return value


def _json_document(request: Request) -> object:
    """A DRS JSON body, or an ``InvalidBody`` the simulator rejects after its token and slot checks."""
    if request.mimetype != "application/json":
        return InvalidBody("Content-Type must be application/json")
    try:
        return json.loads(request.get_data())
    except ValueError:
        return InvalidBody("The body is not valid JSON")


def _bearer_token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


def _check_versions(request: Request, route: DrsRoute) -> str:
    """Both version headers must name this route's documented schemas; returns the result type."""
    type_version = request.headers.get(TYPE_VERSION)
    if not type_version:
        raise BadRequest(f"Missing {TYPE_VERSION} header")
    if type_version != route.input_type:
        raise BadRequest(f"Unsupported {TYPE_VERSION}; this call takes {route.input_type}")
    accept_type = request.headers.get(ACCEPT_TYPE)
    if not accept_type:
        raise BadRequest(f"Missing {ACCEPT_TYPE} header")
    if accept_type not in route.result_types:
        raise BadRequest(f"Unsupported {ACCEPT_TYPE}; this call answers {' or '.join(route.result_types)}")
    return accept_type


_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The token endpoint answers any origin: a code is useless without its PKCE verifier or the client
# secret, and no cookie or credential of the browser is involved (so no Allow-Credentials).
_TOKEN_CORS = {"Access-Control-Allow-Origin": "*"}
_TOKEN_PREFLIGHT = {
    "Access-Control-Allow-Methods": "POST",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "600",
}


def _json_response(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    # slotStatus and deviceStatus answer 200 with no body at all, as DRS does.
    data = "" if body is None else json.dumps(body)
    response = Response(data, status=status, headers=headers)
    if body is not None:
        response.content_type = "application/json"
    return response


def _drs_error(status: int, error_type: str, message: str) -> Response:
    """A DRS error answer: ``{"message"}`` with the error's type and a fresh request id in headers."""
    headers = {ERROR_TYPE: error_type, REQUEST_ID: str(uuid.uuid4())}
    return _json_response(status, {"message": message}, headers=headers)


def _oauth_error(status: int, error: str, description: str) -> Response:
    return _json_response(status, {"error": error, "error_description": description}, headers=_NO_STORE)


def _settings_page(serial: str, slots: dict[str, Product | None], exit_uri: str) -> str:
    rows = "".join(
        f"<li>{html.escape(slot_id)}: {html.escape(product.asin) if product else 'no product selected'}</li>"
        for slot_id, product in slots.items()
    )
    return (
        "<!doctype html><html><head><title>Dash Replenishment settings</title></head><body>"
        f"<h1>Device {html.escape(serial)}</h1><ul>{rows}</ul>"
        f'<a href="{html.escape(exit_uri, quote=True)}">Done</a></body></html>'
    )
