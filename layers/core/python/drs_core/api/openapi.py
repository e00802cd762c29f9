"""The statuses of the served OpenAPI document, as the API answers them (docs/api.md §1).

Powertools describes every route with a 200 (whatever status the route answers), a 422 for request
validation (ours answers 400 ``INVALID_REQUEST``) and no error shape. ``with_contract_statuses`` rewrites
each operation's responses: the route's own success status, and every error status of the contract
with its body's schema. ``tests/docs/test_docs.py`` holds these tables and docs/api.md §1 together.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from drs_core.api.models import ErrorResponse

REF = "#/components/schemas/{model}"
ERROR_SCHEMA = "ErrorResponse"
# API Gateway's own refusals (no or refused credential) carry {"message": ...}, not our error shape.
GATEWAY_SCHEMA = "GatewayRefusal"
GATEWAY_STATUSES = frozenset({401, 403})

# Every route: bad path/query/body (400), no credential (401) or a refused one (403), a fault (500).
EVERY_ROUTE = (400, 401, 403, 500)
WITH_BODY = (413, 415)
# Calls to DRS or LWA: refused (502) or not answering after retries (503).
UPSTREAM = (502, 503)
REGISTRATION = "/v1/devices/{serial}/registration"
TEST_ORDERS = "/v1/devices/{serial}/test-orders"

# (method, path) → (success status, error statuses besides EVERY_ROUTE).
ROUTE_STATUSES: dict[tuple[str, str], tuple[int, tuple[int, ...]]] = {
    ("POST", REGISTRATION): (201, (409, *WITH_BODY, *UPSTREAM)),
    ("DELETE", REGISTRATION): (204, (404, *UPSTREAM)),
    ("GET", "/v1/devices"): (200, ()),
    ("GET", "/v1/devices/{serial}"): (200, (404,)),
    ("GET", "/v1/devices/{serial}/settings-link"): (200, (404, 409, *UPSTREAM)),
    ("PUT", "/v1/devices/{serial}/slots/{slotId}/policy"): (200, (404, *WITH_BODY)),
    ("DELETE", TEST_ORDERS): (200, (404, 409, *UPSTREAM)),
    ("DELETE", TEST_ORDERS + "/{slotId}"): (200, (404, 409, *UPSTREAM)),
    ("POST", "/v1/devices/{serial}/usage"): (202, (409, *WITH_BODY, 422, 503)),
}

_POWERTOOLS_VALIDATION = "422"
_POWERTOOLS_SCHEMAS = ("HTTPValidationError", "ValidationError")


def with_contract_statuses(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (Powertools' OpenAPI dict) with each known operation's responses as answered."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template=REF)
    schemas.update(error_schema.pop("$defs", {}))
    schemas[ERROR_SCHEMA] = error_schema
    schemas[GATEWAY_SCHEMA] = {
        "type": "object",
        "properties": {"message": {"type": "string"}},
        "required": ["message"],
        "description": "API Gateway's own answer, before any function runs",
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            statuses = ROUTE_STATUSES.get((method.upper(), path))
            if statuses is not None:
                operation["responses"] = _responses(operation.get("responses", {}), *statuses)
    if not any(f'"{REF.format(model=name)}"' in json.dumps(document) for name in _POWERTOOLS_SCHEMAS):
        for name in _POWERTOOLS_SCHEMAS:
            schemas.pop(name, None)
    return document


def _responses(generated: dict[str, Any], success: int, errors: tuple[int, ...]) -> dict[str, Any]:
    answers = {key: value for key, value in generated.items() if key not in ("200", _POWERTOOLS_VALIDATION)}
    ok = generated.get("200", {"description": HTTPStatus(success).phrase})
    if success == HTTPStatus.NO_CONTENT:
        ok = {"description": HTTPStatus.NO_CONTENT.phrase}
    answers[str(success)] = ok
    for status in sorted({*EVERY_ROUTE, *errors}):
        schema = GATEWAY_SCHEMA if status in GATEWAY_STATUSES else ERROR_SCHEMA
        answers[str(status)] = {
            "description": HTTPStatus(status).phrase,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=schema)}}},
        }
    return dict(sorted(answers.items()))
