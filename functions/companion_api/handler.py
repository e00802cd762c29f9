"""Companion app API (docs/api.md §1): linking, unlinking, device reads, settings link, slot policy,
test-order cancellation, and the OpenAPI document.

One Powertools resolver for every companion route; each route reads the caller's LWA ``user_id`` from
the companion authorizer's context, calls one service function and shapes its answer. Errors are mapped
by ``drs_core.api.errors`` only.
"""

from __future__ import annotations

import json
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths

from drs_core import dependencies
from drs_core.adapters import invocation_budget
from drs_core.api.companion import (
    DeviceListResponse,
    DeviceView,
    PolicyUpdateRequest,
    RegistrationRequest,
    RegistrationResponse,
    SettingsLinkResponse,
    TestOrdersCancelledResponse,
    TestOrderSlotStatus,
    device_view,
)
from drs_core.api.errors import Unauthenticated, register_error_handlers, resolve
from drs_core.api.models import (
    IDENTIFIER_MAX_LENGTH,
    IDENTIFIER_PATTERN,
    SLOT_ID_PATTERN,
    SlotView,
    slot_view,
)
from drs_core.api.openapi import api_document
from drs_core.clock import default_clock
from drs_core.observability import logger, metrics
from drs_core.services import devices, linking
from drs_core.settings import load_settings, settings

load_settings(
    required=["STATE_TABLE", "TOKENS_TABLE", "TOKENS_KMS_KEY_ID", "LWA_CLIENT_ID", "LWA_CLIENT_SECRET_NAME"]
)

app = APIGatewayHttpResolver(
    enable_validation=True, response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR
)
register_error_handlers(app)

SerialPath = Annotated[str, Path(pattern=IDENTIFIER_PATTERN, max_length=IDENTIFIER_MAX_LENGTH)]
SlotIdPath = Annotated[str, Path(pattern=SLOT_ID_PATTERN, max_length=128)]
COMPANION = [{"companion": []}]


def _user_id() -> str:
    """The LWA user id the companion authorizer put in the request context."""
    user_id = app.current_event.request_context.authorizer.get_lambda.get("userId")
    if not user_id:
        raise Unauthenticated("no authenticated user")
    return str(user_id)


@app.post(
    "/v1/devices/<serial>/registration",
    security=COMPANION,
    summary="Link a device (LWA code and the device's pairing code)",
    status_code=201,
)
def register_device(
    serial: SerialPath, body: Annotated[RegistrationRequest, Body()]
) -> Response[RegistrationResponse]:
    logger.append_keys(serial=serial)
    result = linking.link_device(
        linking.LinkRequest(
            serial=serial,
            model_id=body.modelId,
            authorization_code=body.authorizationCode,
            redirect_uri=body.redirectUri,
            code_verifier=body.codeVerifier,
            is_test_device=body.isTestDevice,
            pairing_code=body.pairingCode,
        ),
        owner_id=_user_id(),
        lwa=dependencies.lwa_client(),
        drs=dependencies.drs_client(),
        vault=dependencies.token_vault(),
        repository=dependencies.repository(),
        registry=dependencies.device_registry() if settings().require_pairing_code else None,
    )
    answer = RegistrationResponse(
        device=device_view(result.device, result.slots, default_clock().now()),
        deviceToken=result.device_token,
    )
    return Response(HTTPStatus.CREATED, content_types.APPLICATION_JSON, answer)


@app.delete(
    "/v1/devices/<serial>/registration", security=COMPANION, summary="Unlink a device", status_code=204
)
def unregister_device(serial: SerialPath) -> Response[None]:
    logger.append_keys(serial=serial)
    linking.unlink_device(
        serial,
        owner_id=_user_id(),
        drs=dependencies.drs_client(),
        vault=dependencies.token_vault(),
        repository=dependencies.repository(),
    )
    return Response(HTTPStatus.NO_CONTENT, content_types.APPLICATION_JSON, None)


@app.get("/v1/devices", security=COMPANION, summary="The user's devices")
def list_devices() -> DeviceListResponse:
    now = default_clock().now()
    found = devices.list_devices(_user_id(), dependencies.repository())
    return DeviceListResponse(devices=[device_view(device, slots, now) for device, slots in found])


@app.get("/v1/devices/<serial>", security=COMPANION, summary="One device with its slots")
def get_device(serial: SerialPath) -> DeviceView:
    logger.append_keys(serial=serial)
    device, slots = devices.get_device(serial, _user_id(), dependencies.repository())
    return device_view(device, slots, default_clock().now())


@app.get("/v1/devices/<serial>/settings-link", security=COMPANION, summary="DRS settings page URL")
def get_settings_link(
    serial: SerialPath, exitUri: Annotated[str, Query(min_length=1, max_length=2048)]
) -> SettingsLinkResponse:
    logger.append_keys(serial=serial)
    url = linking.settings_link(
        serial,
        exitUri,
        owner_id=_user_id(),
        web_endpoint=settings().drs_web_endpoint,
        vault=dependencies.token_vault(),
        repository=dependencies.repository(),
        app_schemes=settings().settings_exit_schemes,
        loopback=settings().settings_exit_loopback,
    )
    return SettingsLinkResponse(url=url)


@app.put("/v1/devices/<serial>/slots/<slotId>/policy", security=COMPANION, summary="Change a slot's policy")
def put_policy(
    serial: SerialPath, slotId: SlotIdPath, body: Annotated[PolicyUpdateRequest, Body()]
) -> SlotView:
    logger.append_keys(serial=serial, slotId=slotId)
    slot = devices.update_policy(
        serial,
        slotId,
        owner_id=_user_id(),
        repository=dependencies.repository(),
        threshold_fraction=body.thresholdFraction,
        lead_time_days=body.leadTimeDays,
        auto_reorder=body.autoReorder,
    )
    return slot_view(slot, default_clock().now())


@app.delete("/v1/devices/<serial>/test-orders", security=COMPANION, summary="Cancel every test order")
def cancel_all_test_orders(serial: SerialPath) -> TestOrdersCancelledResponse:
    logger.append_keys(serial=serial)
    return _cancel_test_orders(serial, None)


@app.delete(
    "/v1/devices/<serial>/test-orders/<slotId>", security=COMPANION, summary="Cancel one slot's test order"
)
def cancel_slot_test_order(serial: SerialPath, slotId: SlotIdPath) -> TestOrdersCancelledResponse:
    logger.append_keys(serial=serial, slotId=slotId)
    return _cancel_test_orders(serial, slotId)


def _cancel_test_orders(serial: str, slot_id: str | None) -> TestOrdersCancelledResponse:
    statuses = devices.cancel_test_orders(
        serial,
        slot_id,
        owner_id=_user_id(),
        drs=dependencies.drs_client(),
        vault=dependencies.token_vault(),
        repository=dependencies.repository(),
    )
    return TestOrdersCancelledResponse(
        slots=[TestOrderSlotStatus(slotId=s.slot_id, orderStatus=s.order_status) for s in statuses]
    )


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi_document() -> Response[Any]:
    """Every route of the API, the device routes' included (``drs_core.api.openapi``), built once."""
    return Response(HTTPStatus.OK, content_types.APPLICATION_JSON, _document())


@cache
def _document() -> str:
    return json.dumps(api_document(app))


# Kept back from every DRS/LWA request's retry budget for the writes after them (device, tokens,
# slots) and the answer: linking's two calls must end in time for the link to be stored.
REQUEST_TIME_RESERVE_SECONDS = 3.0


@logger.inject_lambda_context(clear_state=True, correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with invocation_budget.bounded_by_invocation(context, reserve_seconds=REQUEST_TIME_RESERVE_SECONDS):
        return resolve(app, event, context)
