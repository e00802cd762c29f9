"""Real-shaped API Gateway HTTP API events (payload format 2.0) for handler tests.

``http_event`` builds what a route's function receives (with the authorizer's context, as API Gateway
adds it after an allow); ``authorizer_event`` what a Lambda authorizer with simple responses receives.
Paths are matched against a route template (``/v1/devices/{serial}``) to fill ``routeKey`` and
``pathParameters`` the way API Gateway does.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any
from urllib.parse import urlencode

API_ID = "a1b2c3d4e5"
ACCOUNT = "123456789012"
REGION = "us-east-1"
DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
_TIME_EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def path_parameters(template: str, path: str) -> dict[str, str]:
    """``{"serial": "SN1"}`` for template ``/v1/devices/{serial}`` and path ``/v1/devices/SN1``."""
    pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
    match = re.match(pattern, path)
    if match is None:
        raise ValueError(f"path {path!r} does not match route {template!r}")
    return match.groupdict()


def _headers(authorization: str | None, extra: dict[str, str] | None, has_body: bool) -> dict[str, str]:
    # API Gateway HTTP APIs hand headers over in lower case.
    headers = {
        "accept": "application/json",
        "host": DOMAIN,
        "user-agent": "companion-app/1.0",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if has_body:
        headers["content-type"] = "application/json"
    if authorization is not None:
        headers["authorization"] = authorization
    for name, value in (extra or {}).items():
        headers[name.lower()] = value
    return headers


def _request_context(method: str, path: str, route_key: str, authorizer: dict[str, Any] | None) -> dict:
    context: dict[str, Any] = {
        "accountId": ACCOUNT,
        "apiId": API_ID,
        "domainName": DOMAIN,
        "domainPrefix": API_ID,
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.7",
            "userAgent": "companion-app/1.0",
        },
        "requestId": uuid.uuid4().hex[:16] + "=",
        "routeKey": route_key,
        "stage": "$default",
        "time": "01/Jan/2026:00:00:00 +0000",
        "timeEpoch": _TIME_EPOCH_MS,
    }
    if authorizer is not None:
        context["authorizer"] = authorizer
    return context


def http_event(
    method: str,
    route: str,
    path: str | None = None,
    *,
    body: Any = None,
    raw_body: str | bytes | None = None,
    base64_body: bool = False,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    authorization: str | None = None,
    authorizer_context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The event a route's function receives.

    ``route`` is the template (``/v1/devices/{serial}``), ``path`` the concrete path (defaults to the
    template itself for routes without parameters). ``body`` is JSON-encoded; ``raw_body`` is sent as
    is (``base64_body`` encodes it the way API Gateway does for binary media). ``authorizer_context``
    is what a Lambda authorizer returned as ``context`` (``{"userId": …}``); None means no authorizer.
    """
    path = path or route
    method = method.upper()
    if body is not None and raw_body is not None:
        raise ValueError("pass body or raw_body, not both")
    text: str | None = None
    if body is not None:
        text = json.dumps(body)
    elif raw_body is not None:
        data = raw_body.encode("utf-8") if isinstance(raw_body, str) else raw_body
        text = base64.b64encode(data).decode("ascii") if base64_body else data.decode("utf-8")
    route_key = f"{method} {route}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": _headers(authorization, headers, text is not None),
        "requestContext": _request_context(
            method,
            path,
            route_key,
            {"lambda": dict(authorizer_context)} if authorizer_context is not None else None,
        ),
        "isBase64Encoded": bool(base64_body and text is not None),
    }
    if query:
        event["queryStringParameters"] = dict(query)
    params = path_parameters(route, path)
    if params:
        event["pathParameters"] = params
    if text is not None:
        event["body"] = text
    return event


def authorizer_event(
    method: str,
    route: str,
    path: str | None = None,
    *,
    authorization: str | None = None,
    identity_source: list[str] | None = None,
) -> dict[str, Any]:
    """The event a Lambda authorizer (payload 2.0, simple responses) receives for a request.

    ``identitySource`` defaults to the Authorization header's value and the path (the device
    authorizer's sources); API Gateway does not call the authorizer at all when a source is missing,
    but tests may still pass ``authorization=None`` to check the function's own refusal.
    """
    path = path or route
    method = method.upper()
    route_key = f"{method} {route}"
    sources = identity_source
    if sources is None:
        sources = [value for value in (authorization, path) if value is not None]
    event: dict[str, Any] = {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/$default/{method}{path}",
        "identitySource": sources,
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": _headers(authorization, None, False),
        "requestContext": _request_context(method, path, route_key, None),
    }
    params = path_parameters(route, path)
    if params:
        event["pathParameters"] = params
    return event
