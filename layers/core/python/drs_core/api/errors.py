"""The one place where failures become HTTP answers: ``{"error": {"code", "message"}}`` (docs/api.md §1).

``register_error_handlers(app)`` installs the mapping on a Powertools resolver: ``DomainError`` by its
``code``/``status``, request validation → 400 ``INVALID_REQUEST``, unknown route → 404, DRS/LWA trouble
→ 502/503, anything else → 500 ``INTERNAL_ERROR`` (logged here, never sent: no stack trace, no secret).
``resolve(app, event, context)`` refuses bodies over 64 KiB with 413 before anything parses them.
"""

from __future__ import annotations

import base64
import binascii
import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)

from drs_core.errors import (
    DomainError,
    DrsError,
    DrsRetryableError,
    LwaError,
    LwaInvalidClient,
    LwaRetryableError,
)
from drs_core.observability import logger
from drs_core.paths import decode_event_path

MAX_BODY_BYTES = 64 * 1024
# No request of the contract nests deeper than 4; 32 leaves room and stays far from the parser's stack.
MAX_JSON_DEPTH = 32
# How many validation problems one answer lists; the rest are counted.
_MAX_LISTED_PROBLEMS = 5


class Unauthenticated(DomainError):
    """The request reached a handler without the identity its authorizer should have added."""

    code, status = "UNAUTHORIZED", 401


def error_body(code: str, message: str) -> dict[str, Any]:
    """The error shape of docs/api.md §1."""
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str) -> Response:
    """A resolver ``Response`` carrying the error shape."""
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(error_body(code, message)),
    )


def body_size(event: dict[str, Any]) -> int:
    """Size in bytes of the request body as the client sent it (base64 bodies decoded)."""
    body = event.get("body")
    if not body:
        return 0
    if event.get("isBase64Encoded"):
        try:
            return len(base64.b64decode(body, validate=False))
        except (binascii.Error, ValueError):
            return len(body)
    return len(body.encode("utf-8"))


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON ``text`` nests arrays and objects deeper than ``limit`` (brackets inside
    strings do not count). Counting first is cheap: most bodies have too few brackets to need the walk."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _answer(status: HTTPStatus, code: str, message: str) -> dict[str, Any]:
    return {
        "statusCode": status.value,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps(error_body(code, message)),
        "isBase64Encoded": False,
    }


def resolve(app: APIGatewayHttpResolver, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``app.resolve`` for one API Gateway HTTP API event: the path decoded once (``drs_core.paths``),
    bodies over 64 KiB refused with 413 and JSON nested deeper than ``MAX_JSON_DEPTH`` with 400 before
    anything parses them (the parser would run out of stack: a 500)."""
    decode_event_path(event)
    size = body_size(event)
    if size > MAX_BODY_BYTES:
        logger.info("request body too large", extra={"bodyBytes": size, "errorCode": "PAYLOAD_TOO_LARGE"})
        return _answer(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            f"the request body exceeds {MAX_BODY_BYTES} bytes",
        )
    body = event.get("body")
    if isinstance(body, str) and event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            body = None  # not base64: the resolver refuses it
    if isinstance(body, str) and json_depth_exceeds(body):
        logger.info("request body nested too deeply", extra={"errorCode": "INVALID_REQUEST"})
        return _answer(
            HTTPStatus.BAD_REQUEST, "INVALID_REQUEST", f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        )
    return app.resolve(event, context)


def validation_message(errors: list[dict[str, Any]]) -> str:
    """A short, safe description of validation problems: where and what, never the input itself."""
    problems = []
    for error in errors[:_MAX_LISTED_PROBLEMS]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "")
        problems.append(f"{location}: {error.get('msg') or error.get('type', 'invalid')}")
    if len(errors) > _MAX_LISTED_PROBLEMS:
        problems.append(f"and {len(errors) - _MAX_LISTED_PROBLEMS} more")
    return "; ".join(problems) or "the request is invalid"


def register_error_handlers(app: APIGatewayHttpResolver) -> None:
    """Install the error mapping on ``app`` (every API function calls this once, at import)."""

    @app.exception_handler(DomainError)
    def _domain_error(error: DomainError) -> Response:
        logger.info("request refused", extra={"errorCode": error.code, "status": error.status})
        return error_response(error.status, error.code, error.message)

    @app.exception_handler(RequestValidationError)
    def _invalid_request(error: RequestValidationError) -> Response:
        problems = list(error.errors())
        # Only locations and types: the inputs may be authorisation codes.
        logger.info(
            "request validation failed",
            extra={
                "errorCode": "INVALID_REQUEST",
                "problems": [{"loc": p.get("loc"), "type": p.get("type")} for p in problems],
            },
        )
        return error_response(HTTPStatus.BAD_REQUEST, "INVALID_REQUEST", validation_message(problems))

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_media_type(_: RequestUnsupportedContentType) -> Response:
        return error_response(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", "send application/json"
        )

    @app.exception_handler(NotFoundError)
    def _no_route(_: NotFoundError) -> Response:
        return error_response(HTTPStatus.NOT_FOUND, "NOT_FOUND", "no such route")

    @app.exception_handler(ServiceError)
    def _service_error(error: ServiceError) -> Response:
        status = HTTPStatus(error.status_code)
        return error_response(status, status.name, status.phrase)

    @app.exception_handler([LwaRetryableError, DrsRetryableError])
    def _upstream_unavailable(error: Exception) -> Response:
        logger.warning(
            "upstream unavailable", extra={"errorType": type(error).__name__, "detail": str(error)}
        )
        return error_response(
            HTTPStatus.SERVICE_UNAVAILABLE, "UPSTREAM_UNAVAILABLE", "Amazon did not answer; try again later"
        )

    @app.exception_handler(LwaInvalidClient)
    def _misconfigured(error: LwaInvalidClient) -> Response:
        logger.error("LWA rejects our client credentials: check LWA_CLIENT_ID and the client secret")
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "internal error")

    @app.exception_handler([LwaError, DrsError])
    def _upstream_error(error: Exception) -> Response:
        logger.warning("upstream refused", extra={"errorType": type(error).__name__, "detail": str(error)})
        return error_response(HTTPStatus.BAD_GATEWAY, "UPSTREAM_ERROR", "Amazon refused the request")

    @app.exception_handler([ResponseValidationError, Exception])
    def _unexpected(error: Exception) -> Response:
        # The trace goes to the log only; adapters keep tokens out of exception messages.
        logger.exception("unhandled error", extra={"errorType": type(error).__name__})
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "internal error")
