"""The one OpenAPI document of the HTTP API (``GET /v1/openapi.json``, docs/api.md §1).

Each function's Powertools resolver describes its own routes; the companion function serves them all:
its own, and the device routes' (whose function is deployed apart, so their operations are declared
here with the same models, path rules and status codes: ``device_routes_schema``; a test holds the
usage function's own document to this one). Powertools' ``OpenAPIMerge`` joins them, then
``finish_document`` writes the contract as the API answers it: each operation's success code and every
error status it can answer, with the error schema (``{"error": {"code", "message"}}``) for answers of
our functions and ``{"message"}`` for those of API Gateway itself (401 without credentials, 403 denied
by an authorizer, 404 no such route, 413 over API Gateway's 10 MB), instead of Powertools' 422.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path
from pydantic import TypeAdapter

from drs_core.api.errors import MAX_BODY_BYTES, MAX_JSON_DEPTH
from drs_core.api.models import (
    IDENTIFIER_MAX_LENGTH,
    IDENTIFIER_PATTERN,
    ErrorResponse,
    UsageRequest,
    UsageResponse,
)

TITLE = "DRS replenishment API"
DESCRIPTION = (
    "Companion app and device routes (docs/api.md §1). Errors of the functions are "
    '`{"error": {"code", "message"}}`; API Gateway\'s own answers (401 no credentials, 403 denied, '
    f'404 no route, 413 over 10 MB) are `{{"message"}}`. Bodies over {MAX_BODY_BYTES} bytes answer 413, '
    f"JSON nested deeper than {MAX_JSON_DEPTH} levels 400."
)
USAGE_PATH = "/v1/devices/{serial}/usage"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
SECURITY_SCHEMES = {
    "companion": HTTPBearer(description="The app user's Login with Amazon access token"),
    # "Authorization: Device <credential>": OpenAPI has no custom HTTP scheme, so an API key header.
    "device": APIKey(
        **{"in": APIKeyIn.header},
        name="Authorization",
        description="'Device <deviceToken>', the credential returned at linking",
    ),
}
SerialPath = Annotated[str, Path(pattern=IDENTIFIER_PATTERN, max_length=IDENTIFIER_MAX_LENGTH)]

# What each operation answers besides its success: (method, path) → statuses. 401/403 come from API
# Gateway's authorizers (403 also from a function: a refused pairing code, an ended link), 404 from a
# function (the user's device not found) or API Gateway (no route), 413 from either, 502/503 when
# Amazon refused or did not answer.
_BODY = (400, 413, 415)
_AMAZON = (502, 503)
ERROR_STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/devices/{serial}/registration"): (*_BODY, 401, 403, 409, 429, *_AMAZON),
    ("delete", "/v1/devices/{serial}/registration"): (400, 401, 403, 404, *_AMAZON),
    ("get", "/v1/devices"): (401, 403),
    ("get", "/v1/devices/{serial}"): (400, 401, 403, 404),
    ("get", "/v1/devices/{serial}/settings-link"): (400, 401, 403, 404, 409, *_AMAZON),
    ("put", "/v1/devices/{serial}/slots/{slotId}/policy"): (*_BODY, 401, 403, 404),
    ("delete", "/v1/devices/{serial}/test-orders"): (400, 401, 403, 404, 409, *_AMAZON),
    ("delete", "/v1/devices/{serial}/test-orders/{slotId}"): (400, 401, 403, 404, 409, *_AMAZON),
    ("post", USAGE_PATH): (*_BODY, 401, 403, 409, 422, 503),
    ("get", "/v1/openapi.json"): (),
}
# Statuses that only API Gateway answers here, and those either it or a function may answer.
_GATEWAY_ONLY = frozenset({401})
_EITHER = frozenset({403, 404, 413})
_REF_ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
_REF_GATEWAY = {"$ref": "#/components/schemas/GatewayMessage"}
GATEWAY_MESSAGE_SCHEMA = {
    "title": "GatewayMessage",
    "description": "API Gateway's own answer (not a function's)",
    "type": "object",
    "properties": {"message": {"type": "string"}},
    "required": ["message"],
}


def device_routes_schema() -> dict[str, Any]:
    """The device routes' operations, as the usage function declares them."""
    docs = APIGatewayHttpResolver(enable_validation=True)

    @docs.post(USAGE_PATH, summary="Report slot usage (device)", status_code=202, security=[{"device": []}])
    def post_usage(  # the operation's signature only: the usage function serves it
        serial: SerialPath,
        body: Annotated[UsageRequest, Body()],
        idempotency_key: Annotated[
            str | None,
            Header(alias="Idempotency-Key", min_length=1, max_length=MAX_IDEMPOTENCY_KEY_LENGTH),
        ] = None,
    ) -> Response[UsageResponse]:
        raise NotImplementedError

    schema = docs.get_openapi_schema(title=TITLE, version="1", security_schemes=SECURITY_SCHEMES)
    return schema.model_dump(by_alias=True, exclude_none=True)


def api_document(companion: APIGatewayHttpResolver) -> dict[str, Any]:
    """The whole API's document: ``companion``'s routes merged with the device routes', finished."""
    merge = OpenAPIMerge(
        title=TITLE,
        version="1",
        description=DESCRIPTION,
        security_schemes=SECURITY_SCHEMES,
        on_conflict="error",
    )
    merge.add_schema(
        companion.get_openapi_schema(title=TITLE, version="1", security_schemes=SECURITY_SCHEMES)
    )
    merge.add_schema(device_routes_schema())
    # Through the OpenAPI model's JSON: the merged dicts still hold Powertools' enums.
    return finish_document(json.loads(merge.get_openapi_json_schema()))


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """Responses as the API answers them (see the module docstring); Powertools' 422 and its validation
    schemas removed (validation answers 400 here)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)
    schemas["ErrorResponse"] = TypeAdapter(ErrorResponse).json_schema(
        ref_template="#/components/schemas/{model}"
    )
    schemas.update(schemas["ErrorResponse"].pop("$defs", {}))
    schemas["GatewayMessage"] = GATEWAY_MESSAGE_SCHEMA
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for generated in ("422", "500"):
                responses.pop(generated, None)
            if "204" in responses:  # no body at all, not a JSON null
                responses["204"] = {"description": "No Content"}
            statuses = set(ERROR_STATUSES.get((method, path), (400, 401, 403, 404)))
            if "{" in path:  # a path parameter no route can match (a "/" in it, say): 404
                statuses.add(404)
            for status in sorted(statuses):
                responses[str(status)] = _error_response(status)
            for parameter in operation.get("parameters", []):
                _drop_null(parameter)
    _add_links(document)
    return document


# From the device list, what a client does next with the first device (OpenAPI links: clients and
# stateful fuzzers follow them). (method, path) → the list's fields for its path parameters.
_DEVICE_LINKS: dict[tuple[str, str], dict[str, str]] = {
    ("get", "/v1/devices/{serial}"): {"serial": "$response.body#/devices/0/serial"},
    ("get", "/v1/devices/{serial}/settings-link"): {"serial": "$response.body#/devices/0/serial"},
    ("put", "/v1/devices/{serial}/slots/{slotId}/policy"): {
        "serial": "$response.body#/devices/0/serial",
        "slotId": "$response.body#/devices/0/slots/0/slotId",
    },
    ("delete", "/v1/devices/{serial}/test-orders/{slotId}"): {
        "serial": "$response.body#/devices/0/serial",
        "slotId": "$response.body#/devices/0/slots/0/slotId",
    },
    ("post", USAGE_PATH): {"serial": "$response.body#/devices/0/serial"},
}


def _add_links(document: dict[str, Any]) -> None:
    paths = document.get("paths", {})
    listing = paths.get("/v1/devices", {}).get("get")
    if listing is None:
        return
    links = {}
    for (method, path), parameters in _DEVICE_LINKS.items():
        if method in paths.get(path, {}):
            pointer = path.replace("~", "~0").replace("/", "~1")
            name = "".join(
                part.capitalize() for part in f"{method} {path}".replace("/", " ").split() if "{" not in part
            )
            links[name] = {"operationRef": f"#/paths/{pointer}/{method}", "parameters": parameters}
    listing["responses"]["200"]["links"] = links


def _drop_null(parameter: dict[str, Any]) -> None:
    """An optional parameter is absent, never null (``anyOf [X, null]`` → ``X``)."""
    schema = parameter.get("schema", {})
    choices = [choice for choice in schema.get("anyOf", []) if choice != {"type": "null"}]
    if "anyOf" in schema and len(choices) == 1:
        del schema["anyOf"]
        schema.update(choices[0])


def _error_response(status: int) -> dict[str, Any]:
    if status in _GATEWAY_ONLY:
        schema: dict[str, Any] = _REF_GATEWAY
    elif status in _EITHER:
        schema = {"oneOf": [_REF_ERROR, _REF_GATEWAY]}
    else:
        schema = _REF_ERROR
    return {"description": HTTPStatus(status).phrase, "content": {"application/json": {"schema": schema}}}
