"""Usage ingestion: ``POST /v1/devices/{serial}/usage`` (device authorizer) → 202 ``{"slots": [Slot]}``.

The device authorizer already bound the device credential to the path's serial and hands the serial
over in its context; the readings are validated by the request model, applied by
``services.usage.ingest_readings`` (one conditional write per reading, no read) and answered with the
slots as they now stand. An ``Idempotency-Key`` makes a replay answer the same and count once
(Powertools idempotency, keyed by serial and key, checked against the readings).
"""

from __future__ import annotations

from functools import cache
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from drs_core import dependencies
from drs_core.api.errors import Unauthenticated, register_error_handlers, resolve
from drs_core.api.models import (
    IDENTIFIER_MAX_LENGTH,
    IDENTIFIER_PATTERN,
    UsageRequest,
    UsageResponse,
    slot_view,
)
from drs_core.api.openapi import MAX_IDEMPOTENCY_KEY_LENGTH
from drs_core.clock import default_clock
from drs_core.errors import IdempotencyKeyReused, InvalidReading, RequestInProgress
from drs_core.observability import logger, metrics
from drs_core.services.usage import ingest_readings
from drs_core.settings import load_settings, settings

load_settings(required=["STATE_TABLE", "IDEMPOTENCY_TABLE"])

# Devices buffer readings through outages: a replay hours later must still count once.
IDEMPOTENCY_SECONDS = 24 * 3600

app = APIGatewayHttpResolver(
    enable_validation=True, response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR
)
register_error_handlers(app)

SerialPath = Annotated[str, Path(pattern=IDENTIFIER_PATTERN, max_length=IDENTIFIER_MAX_LENGTH)]


def _ingest(request: dict[str, Any]) -> dict[str, Any]:
    """Apply the readings of ``request`` (``serial`` and the JSON body) and build the answer body."""
    body = UsageRequest.model_validate({"readings": request["readings"]})
    now = default_clock().now()
    result = ingest_readings(
        request["serial"],
        [r.to_reading() for r in body.readings],
        link_id=request["linkId"],
        store=dependencies.usage_store(),
        now=now,
    )
    return UsageResponse(slots=[slot_view(slot, now) for slot in result.slots]).model_dump(mode="json")


@cache
def _idempotent() -> tuple[IdempotencyConfig, Any]:
    """``_ingest`` made idempotent on (serial, Idempotency-Key), built on the first keyed request."""
    config = IdempotencyConfig(
        event_key_jmespath="[serial, key]",
        # The same key with other readings is a client bug: refuse it rather than answer the old result.
        payload_validation_jmespath="readings",
        expires_after_seconds=IDEMPOTENCY_SECONDS,
    )
    persistence = DynamoDBPersistenceLayer(
        table_name=str(settings().idempotency_table), boto3_client=dependencies.usage_store().client
    )
    once = idempotent_function(data_keyword_argument="request", config=config, persistence_store=persistence)
    return config, once(_ingest)


def _device_link(path_serial: str) -> str:
    """The link id of the credential the device authorizer vouched for; its serial must be the path's."""
    identity = app.current_event.request_context.authorizer.get_lambda
    authorized, link_id = identity.get("serial"), identity.get("linkId")
    if not authorized or authorized != path_serial or not link_id:
        raise Unauthenticated("no device identity for this serial")
    return str(link_id)


# Declared alike in drs_core.api.openapi (the companion function serves the document of every route).
@app.post(
    "/v1/devices/<serial>/usage",
    summary="Report slot usage (device)",
    status_code=202,
    security=[{"device": []}],
)
def post_usage(serial: SerialPath, body: Annotated[UsageRequest, Body()]) -> Response[UsageResponse]:
    logger.append_keys(serial=serial)
    request = {
        "serial": serial,
        "linkId": _device_link(serial),
        "readings": body.model_dump(mode="json", exclude_none=True)["readings"],
    }
    key = app.current_event.headers.get("idempotency-key")
    if key is None:
        answer = _ingest(request)
    else:
        if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            raise InvalidReading(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
        config, ingest_once = _idempotent()
        config.register_lambda_context(app.lambda_context)
        try:
            answer = ingest_once(request={**request, "key": key})
        except IdempotencyAlreadyInProgressError as busy:
            raise RequestInProgress("a request with this Idempotency-Key is in progress") from busy
        except IdempotencyValidationError as reused:
            raise IdempotencyKeyReused("this Idempotency-Key was used with other readings") from reused
    return Response(HTTPStatus.ACCEPTED, content_types.APPLICATION_JSON, answer)


@logger.inject_lambda_context(clear_state=True, correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return resolve(app, event, context)
