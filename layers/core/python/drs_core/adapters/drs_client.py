"""HTTP client for the Dash Replenishment Service REST API (docs/drs.md §2-§3).

One method per DRS call. Every call sends the LWA access token as a bearer token and both version
headers; only slotStatus and deviceStatus carry a JSON body. Retries (429/5xx, timeouts) happen in the
session (``adapters.http``); what is left afterwards is mapped to the typed errors of ``drs_core.errors``.
The access token never appears in an error, a log line or a repr.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from drs_core.adapters.http import RETRY_STATUSES, Timeouts, build_session
from drs_core.clock import parse_iso, to_iso
from drs_core.errors import (
    DrsBadRequest,
    DrsError,
    DrsNotFound,
    DrsRetryableError,
    DrsTokenRejected,
)
from drs_core.observability import NAMESPACE, logger

__all__ = [
    "DETAIL_ORDER_INPROGRESS",
    "DETAIL_STANDARD_ORDER_PLACED",
    "DETAIL_TEST_ORDER_PLACED",
    "DrsClient",
    "OrderInfo",
    "OrderItem",
    "ProductInfo",
    "ReplenishResult",
    "SlotOrderStatus",
    "SlotStatusReport",
    "SlotSubscription",
    "SubscriptionInfo",
]

DETAIL_STANDARD_ORDER_PLACED = "STANDARD_ORDER_PLACED"
DETAIL_TEST_ORDER_PLACED = "TEST_ORDER_PLACED"
DETAIL_ORDER_INPROGRESS = "ORDER_INPROGRESS"

_TYPE_PREFIX = "com.amazon.dash.replenishment."
# DRS's error headers (docs/drs.md §2): the error's type, and the request id Amazon support asks for.
ERROR_TYPE_HEADER = "x-amzn-ErrorType"
REQUEST_ID_HEADER = "x-amzn-RequestId"
INVALID_TOKEN_ERROR = "InvalidTokenException"  # noqa: S105 (an error name, not a password)


@dataclass(frozen=True)
class ReplenishResult:
    """What DRS said to a replenish call. ``event_instance_id`` may be absent on ``ORDER_INPROGRESS``."""

    detail_code: str
    event_instance_id: str | None

    @property
    def order_placed(self) -> bool:
        """True when this call created an order (standard or test), False for ``ORDER_INPROGRESS``."""
        return self.detail_code in (DETAIL_STANDARD_ORDER_PLACED, DETAIL_TEST_ORDER_PLACED)


@dataclass(frozen=True)
class SlotStatusReport:
    """One slot's consumption report. Quantities may be fractional (the DRS docs' own sample uses 3.5)."""

    expected_replenishment_date: datetime
    remaining_quantity: float
    original_quantity: float
    total_quantity_on_hand: float
    last_use_date: datetime

    def to_json(self) -> dict[str, Any]:
        """The DrsSlotStatusInput@1.0 body."""
        return {
            "expectedReplenishmentDate": to_iso(self.expected_replenishment_date),
            "remainingQuantityInUnit": self.remaining_quantity,
            "originalQuantityInUnit": self.original_quantity,
            "totalQuantityOnHand": self.total_quantity_on_hand,
            "lastUseDate": to_iso(self.last_use_date),
        }


@dataclass(frozen=True)
class ProductInfo:
    """A product the customer picked for a slot (subscriptionInfo v2 only)."""

    asin: str
    quantity: float
    unit: str


@dataclass(frozen=True)
class SlotSubscription:
    """Whether a slot is subscribed and, from v2 answers, the products chosen for it."""

    subscribed: bool
    products: tuple[ProductInfo, ...] = ()


@dataclass(frozen=True)
class SubscriptionInfo:
    """The device's slots (the keys) and their subscription state."""

    slots: dict[str, SlotSubscription]


@dataclass(frozen=True)
class OrderItem:
    """One line of an order. ``expected_delivery_date`` is None while DRS leaves it blank."""

    asin: str
    expected_delivery_date: datetime | None
    quantity: float
    slot_id: str
    status: str


@dataclass(frozen=True)
class OrderInfo:
    """The getOrderInfo answer."""

    instance_id: str
    items: tuple[OrderItem, ...]


@dataclass(frozen=True)
class SlotOrderStatus:
    """One slot's state after cancel-test-order (``NO_ORDER_IN_PROGRESS`` when unlocked)."""

    slot_id: str
    order_status: str


@dataclass(frozen=True)
class _Call:
    """The fixed parts of one DRS operation: its name (as the simulator records it) and its types."""

    operation: str
    input_type: str
    result_type: str


_REPLENISH = _Call("replenish", "DrsReplenishInput@1.0", "DrsReplenishResult@1.0")
_SLOT_STATUS = _Call("slotStatus", "DrsSlotStatusInput@1.0", "DrsSlotStatusResult@1.0")
_DEVICE_STATUS = _Call("deviceStatus", "DrsDeviceStatusInput@1.0", "DrsDeviceStatusResult@1.0")
_SUBSCRIPTION_INFO = {
    1: _Call("subscriptionInfo", "DrsSubscriptionInfoInput@1.0", "DrsSubscriptionInfoResult@1.0"),
    2: _Call("subscriptionInfo", "DrsSubscriptionInfoInput@1.0", "DrsSubscriptionInfoResult@2.0"),
}
_DEREGISTER = _Call("deregistration", "DrsDeregisterInput@2.0", "DrsDeregisterResult@1.0")
_DEREGISTER_LEGACY = _Call("deregistration", "DrsDeregisterInput@1.0", "DrsDeregisterResult@1.0")
_ORDER_INFO = _Call("getOrderInfo", "DrsOrderInfoInput@1.0", "DrsOrderInfoResult@1.0")
_CANCEL_TEST_ORDERS = _Call(
    "cancelTestOrders", "DrsCancelTestOrdersInput@1.0", "DrsCancelTestOrdersResult@1.0"
)


def _segment(value: str) -> str:
    """One URL path segment: everything reserved is escaped, '/' included."""
    return quote(value, safe="")


class DrsClient:
    """Calls DRS on behalf of one device, identified by the access token passed to each method."""

    def __init__(
        self,
        endpoint: str,
        *,
        session: requests.Session | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        """``endpoint`` is the DRS base URL (the simulator's URL locally); the session defaults to
        ``build_session()``, the timeouts to ``Timeouts()``."""
        self._endpoint = endpoint.rstrip("/")
        self._session = session or build_session()
        self._timeouts = timeouts or Timeouts()

    def replenish(self, access_token: str, slot_id: str) -> ReplenishResult:
        """Ask DRS to order the product of ``slot_id``. ``ORDER_INPROGRESS`` means nothing was placed."""
        body = self._call(_REPLENISH, "POST", f"/replenish/{_segment(slot_id)}", access_token)
        instance_id = body.get("eventInstanceId") or None
        return ReplenishResult(detail_code=str(body.get("detailCode", "")), event_instance_id=instance_id)

    def slot_status(self, access_token: str, slot_id: str, report: SlotStatusReport) -> None:
        """Report a slot's consumption and expected run-out date."""
        self._call(
            _SLOT_STATUS, "POST", f"/slotStatus/{_segment(slot_id)}", access_token, json=report.to_json()
        )

    def device_status(self, access_token: str, most_recently_active: datetime) -> None:
        """The daily "device is alive" report."""
        self._call(
            _DEVICE_STATUS,
            "POST",
            "/deviceStatus",
            access_token,
            json={"mostRecentlyActiveDate": to_iso(most_recently_active)},
        )

    def subscription_info(self, access_token: str, *, version: int = 2) -> SubscriptionInfo:
        """The device's slots and whether each is subscribed; ``version=2`` adds the chosen products."""
        call = _SUBSCRIPTION_INFO.get(version)
        if call is None:
            raise ValueError(f"subscriptionInfo result version must be 1 or 2, not {version!r}")
        body = self._call(call, "GET", "/subscriptionInfo", access_token)
        statuses = body.get("slotsSubscriptionStatus") or {}
        return SubscriptionInfo(slots={slot: _slot_subscription(state) for slot, state in statuses.items()})

    def deregister(self, access_token: str) -> None:
        """Deregister the device the token belongs to; every token of that device is revoked."""
        self._call(_DEREGISTER, "DELETE", "/registration", access_token)

    def deregister_legacy(self, access_token: str, model_id: str, serial: str) -> None:
        """The older deregistration call that names the device's model and serial in the path."""
        path = f"/deviceModels/{_segment(model_id)}/devices/{_segment(serial)}/registration"
        self._call(_DEREGISTER_LEGACY, "DELETE", path, access_token)

    def get_order_info(self, access_token: str, instance_id: str) -> OrderInfo:
        """The items and status of the order ``instance_id`` (a replenish ``eventInstanceId``)."""
        body = self._call(_ORDER_INFO, "GET", f"/getOrderInfo/{_segment(instance_id)}", access_token)
        data = body.get("orderInfoData") or {}
        items = tuple(_order_item(item) for item in data.get("orderItems") or ())
        return OrderInfo(instance_id=str(data.get("instanceId", instance_id)), items=items)

    def cancel_test_orders(
        self, access_token: str, slot_id: str | None = None
    ) -> tuple[SlotOrderStatus, ...]:
        """Cancel the open test order of one slot, or of every slot when ``slot_id`` is None."""
        path = "/testOrders" if slot_id is None else f"/testOrders/slots/{_segment(slot_id)}"
        body = self._call(_CANCEL_TEST_ORDERS, "DELETE", path, access_token)
        return tuple(
            SlotOrderStatus(
                slot_id=str(entry.get("slotId", "")), order_status=str(entry.get("orderStatus", ""))
            )
            for entry in body.get("slotOrderStatuses") or ()
        )

    def _call(
        self,
        call: _Call,
        method: str,
        path: str,
        access_token: str,
        *,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send one DRS request; return the JSON body of a 2xx ({} when empty) or raise a typed error."""
        headers = {
            "Authorization": f"Bearer {access_token}",
            "x-amzn-type-version": _TYPE_PREFIX + call.input_type,
            "x-amzn-accept-type": _TYPE_PREFIX + call.result_type,
            "Accept": "application/json",
        }
        started = time.monotonic()
        status: int | None = None
        try:
            # requests sets Content-Type: application/json itself when json= is given.
            response = self._session.request(
                method,
                self._endpoint + path,
                headers=headers,
                json=json,
                timeout=self._timeouts.as_requests(),
            )
            status = response.status_code
        except (requests.Timeout, requests.ConnectionError) as exc:
            # The urllib3 cause names only host and path (the token travels in a header), so chaining is safe.
            raise DrsRetryableError(
                f"{call.operation}: no answer after retries ({type(exc).__name__})", operation=call.operation
            ) from exc
        except requests.RequestException as exc:
            raise DrsError(
                f"{call.operation}: request failed ({type(exc).__name__})", operation=call.operation
            ) from exc
        finally:
            elapsed_ms = round((time.monotonic() - started) * 1000, 1)
            logger.debug(
                "DRS call", extra={"operation": call.operation, "status": status, "elapsed_ms": elapsed_ms}
            )
            _count_call(call.operation, status, elapsed_ms)
        if 200 <= response.status_code < 300:
            return _json_object(response)
        error = _error_for(
            call.operation,
            response.status_code,
            _error_message(response, access_token),
            error_type=_error_type(response),
            request_id=response.headers.get(REQUEST_ID_HEADER),
        )
        # DRS support asks for the request id: every DRS error is logged with it (never the token).
        logger.warning(
            "DRS error",
            extra={
                "operation": call.operation,
                "status": error.status,
                "errorType": error.error_type,
                "requestId": error.request_id,
            },
        )
        raise error


def _count_call(operation: str, status: int | None, elapsed_ms: float) -> None:
    """One EMF record per DRS call (after the session's retries): ``DrsCalls`` 1, ``DrsErrors`` 1 unless
    DRS answered 2xx, ``DrsLatency``; dimensions ``Operation`` and ``service`` (Powertools adds the
    function's). Its own record, because the shared ``metrics`` set has no per-call dimension."""
    record = AmazonCloudWatchEMFProvider(namespace=NAMESPACE)
    record.add_dimension(name="Operation", value=operation)
    record.add_metric(name="DrsCalls", unit=MetricUnit.Count, value=1)
    failed = status is None or not 200 <= status < 300
    record.add_metric(name="DrsErrors", unit=MetricUnit.Count, value=1 if failed else 0)
    record.add_metric(name="DrsLatency", unit=MetricUnit.Milliseconds, value=elapsed_ms)
    record.flush_metrics()


def _slot_subscription(state: Any) -> SlotSubscription:
    """v1 answers a bare boolean per slot, v2 an object with ``subscribed`` and ``productInfoList``."""
    if isinstance(state, dict):
        products = tuple(
            ProductInfo(
                asin=str(item.get("asin", "")),
                quantity=item.get("quantity", 0),
                unit=str(item.get("unit", "")),
            )
            for item in state.get("productInfoList") or ()
        )
        return SlotSubscription(subscribed=bool(state.get("subscribed", False)), products=products)
    return SlotSubscription(subscribed=bool(state))


def _order_item(item: dict[str, Any]) -> OrderItem:
    raw_date = item.get("expectedDeliveryDate")
    # DRS may send the date blank (empty string) before it knows it.
    delivery = parse_iso(raw_date) if isinstance(raw_date, str) and raw_date.strip() else None
    return OrderItem(
        asin=str(item.get("asin", "")),
        expected_delivery_date=delivery,
        quantity=item.get("quantity", 0),
        slot_id=str(item.get("slotId", "")),
        status=str(item.get("status", "")),
    )


def _json_object(response: requests.Response) -> dict[str, Any]:
    """The body as a JSON object; an empty or non-object body counts as {} (slotStatus answers nothing)."""
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_message(response: requests.Response, access_token: str) -> str:
    """The ``message`` of a DRS error body, with the token scrubbed in case a server ever echoes it."""
    message = str(_json_object(response).get("message", ""))
    return message.replace(access_token, "***") if access_token else message


def _error_type(response: requests.Response) -> str | None:
    """The name part of ``x-amzn-ErrorType`` (``<Name>:<namespace URI>`` → ``<Name>``)."""
    value = response.headers.get(ERROR_TYPE_HEADER, "").split(":", 1)[0].strip()
    return value or None


def _error_for(
    operation: str,
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    request_id: str | None = None,
) -> DrsError:
    """Map a non-2xx final answer to the typed error.

    DRS answers 400 both for bad data and for a bad, expired or revoked token; its ``x-amzn-ErrorType``
    header tells them apart (``InvalidTokenException``), and nothing else does: the message text is for
    people. A 400 without that type is a bad request, never retried and never a reason to refresh.
    """
    text = f"{operation}: HTTP {status}" + (f" {error_type}" if error_type else "")
    text += f": {message}" if message else ""
    if status == 400:
        token = error_type == INVALID_TOKEN_ERROR
        cls: type[DrsError] = DrsTokenRejected if token else DrsBadRequest
    elif status == 404:
        cls = DrsNotFound
    elif status in RETRY_STATUSES or status >= 500:
        cls = DrsRetryableError
    else:
        cls = DrsError
    return cls(text, status=status, operation=operation, error_type=error_type, request_id=request_id)
