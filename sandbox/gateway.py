"""A local API Gateway (HTTP API) on loopback: routes, Lambda authorizers with caching, v2.0 payloads.

It serves the template's ``AWS::ApiGatewayV2::Route`` resources: each request becomes an HTTP API
payload v2.0 event; a route with a Lambda REQUEST authorizer runs it first (its answer cached per
identity-source values for ``AuthorizerResultTtlInSeconds`` on the simulated clock), then the
integration's function, whose v2.0 answer becomes the HTTP response. API Gateway's own answers are
reproduced: 401 (identity source missing), 403 (denied), 404 (no route), 413 (body over 10 MB), 500
(function or authorizer error, or a malformed answer).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.wrappers import Request, Response

from drs_core.clock import Clock

from .aws import SandboxError
from .functions import FunctionRunner
from .serving import BackgroundServer
from .template import AuthorizerSpec, RouteSpec, SandboxTemplate
from .webapp import WebAppFiles

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
ACCOUNT_ID = "123456789012"
API_ID = "sandboxapi"
_TEXT_TYPES = re.compile(r"^(text/|application/([\w.+-]*\+)?(json|xml|javascript)\b)", re.IGNORECASE)
_SANDBOX_PREFIX = "/__sandbox/"


def _gateway_answer(status: int, message: str) -> Response:
    """API Gateway's own error answers (not the functions')."""
    return Response(json.dumps({"message": message}), status=status, content_type="application/json")


@dataclass
class _CompiledRoute:
    spec: RouteSpec
    pattern: re.Pattern[str] | None  # None: $default
    specificity: tuple[int, int, int, int]

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.spec.method not in ("ANY", method):
            return None
        if self.pattern is None:
            return {}
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found else None


def compile_route(spec: RouteSpec) -> _CompiledRoute:
    """Route template → regex: ``{name}`` one segment, ``{name+}`` the rest of the path."""
    if spec.path is None:
        return _CompiledRoute(spec, None, (9, 9, 9, 9))
    parts, params, greedy, literals = [], 0, 0, 0
    for segment in spec.path.strip("/").split("/"):
        variable = re.fullmatch(r"\{([A-Za-z0-9_.-]+?)(\+?)\}", segment)
        if variable and variable.group(2):
            parts.append(f"(?P<{_group(variable.group(1))}>.+)")
            greedy += 1
        elif variable:
            parts.append(f"(?P<{_group(variable.group(1))}>[^/]+)")
            params += 1
        else:
            parts.append(re.escape(segment))
            literals += 1
    # API Gateway prefers the most specific route: literal over variable over greedy, method over ANY.
    specificity = (greedy, params, -literals, int(spec.method == "ANY"))
    return _CompiledRoute(spec, re.compile("/" + "/".join(parts)), specificity)


def _group(name: str) -> str:
    return re.sub(r"\W", "_", name)


@dataclass
class _CachedDecision:
    expires: datetime
    authorized: bool
    context: dict[str, Any]


class Gateway:
    """The HTTP API of the template, served by werkzeug on ``host:port`` (port 0: a free one)."""

    def __init__(
        self,
        template: SandboxTemplate,
        runner: FunctionRunner,
        clock: Clock,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        resources_json: Callable[[], dict[str, Any]] | None = None,
        provision_device: Callable[[bytes], tuple[int, dict[str, Any]]] | None = None,
        webapp: WebAppFiles | None = None,
    ) -> None:
        self.template = template
        self.runner = runner
        self.clock = clock
        self.region = region
        self._host = host
        self._resources_json = resources_json or dict
        self._provision_device = provision_device
        # The companion web app under /app/: what CloudFront serves in a deployment (infra/webapp.py).
        self._webapp = webapp
        self._routes = sorted((compile_route(r) for r in template.routes), key=lambda r: r.specificity)
        for route in template.routes:
            if route.payload_version != "2.0":
                raise SandboxError(f"route {route.route_key}: only payload format 2.0 is served")
            if route.authorization_type not in ("NONE", "CUSTOM"):
                # Serving it without its JWT or IAM check would let everything through: refuse instead.
                raise SandboxError(f"route {route.route_key}: {route.authorization_type} auth is not served")
        self._cache: dict[tuple[str, tuple[str, ...]], _CachedDecision] = {}
        self._cache_lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.authorizer_invocations: Counter[str] = Counter()
        self._serving = BackgroundServer(self, host=host, port=port, name="sandbox-gateway")

    # ----------------------------------------------------------------------------------- serving

    @property
    def url(self) -> str:
        return self._serving.url

    def start(self) -> Gateway:
        self._serving.start()
        return self

    def stop(self) -> None:
        self._serving.stop()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self.handle(request)
        self.statuses[response.status_code] += 1
        return response(environ, start_response)

    def clear_authorizer_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # ----------------------------------------------------------------------------------- requests

    def handle(self, request: Request) -> Response:
        """One request → API Gateway's answer."""
        if request.path.startswith(_SANDBOX_PREFIX):
            return self._sandbox_route(request)
        if self._webapp is not None and self._webapp.handles(request.path):
            return self._webapp.respond(request)
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _gateway_answer(413, "Request Entity Too Large")
        body = request.get_data(cache=False)
        if len(body) > MAX_BODY_BYTES:
            return _gateway_answer(413, "Request Entity Too Large")
        found = self._route(request.method, request.path)
        if found is None:
            return _gateway_answer(404, "Not Found")
        route, path_parameters = found
        event = self._event(request, body, route.spec, path_parameters)
        if route.spec.authorization_type == "CUSTOM" and route.spec.authorizer:
            denial = self._authorize(self.template.authorizers[route.spec.authorizer], event)
            if denial is not None:
                return denial
        if route.spec.function is None:
            return _gateway_answer(500, "Internal Server Error")
        outcome = self.runner.invoke(route.spec.function, event)
        if not outcome.ok:
            return _gateway_answer(500, "Internal Server Error")
        try:
            response = _http_response(outcome.result)
        except (TypeError, ValueError) as exc:
            logger.warning("%s answered a malformed v2.0 response: %s", outcome.function, exc)
            return _gateway_answer(500, "Internal Server Error")
        response.headers["apigw-requestid"] = event["requestContext"]["requestId"]
        return response

    def _sandbox_route(self, request: Request) -> Response:
        if request.method == "GET" and request.path == "/__sandbox/resources":
            return Response(json.dumps(self._resources_json()), content_type="application/json")
        if request.method == "POST" and request.path == "/__sandbox/devices" and self._provision_device:
            status, answer = self._provision_device(request.get_data(cache=False))
            return Response(json.dumps(answer), status=status, content_type="application/json")
        return _gateway_answer(404, "Not Found")

    def _route(self, method: str, path: str) -> tuple[_CompiledRoute, dict[str, str]] | None:
        for route in self._routes:
            params = route.match(method.upper(), path)
            if params is not None:
                return route, params
        return None

    def _event(
        self, request: Request, body: bytes, route: RouteSpec, path_parameters: dict[str, str]
    ) -> dict[str, Any]:
        """The HTTP API payload v2.0 event of this request."""
        now = self.clock.now()
        raw_uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
        raw_path = raw_uri.split("?", 1)[0]
        raw_query = request.query_string.decode("latin-1")
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            if key == "cookie":
                continue
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        source_ip = request.remote_addr or "127.0.0.1"
        headers.setdefault("x-forwarded-for", source_ip)
        headers.setdefault("x-forwarded-proto", "http")
        host = request.host or f"{self._host}"
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": raw_path,
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": API_ID,
                "domainName": host,
                "domainPrefix": host.split(".", 1)[0],
                "http": {
                    "method": request.method.upper(),
                    "path": request.path,
                    "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                    "sourceIp": source_ip,
                    "userAgent": request.headers.get("User-Agent", ""),
                },
                "requestId": str(uuid.uuid4()),
                "routeKey": route.route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": False,
        }
        cookies = [c.strip() for c in request.headers.get("Cookie", "").split(";") if c.strip()]
        if cookies:
            event["cookies"] = cookies
        query: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            query[name] = f"{query[name]},{value}" if name in query else value
        if query:
            event["queryStringParameters"] = query
        if path_parameters:
            event["pathParameters"] = path_parameters
        if body:
            content_type = request.headers.get("Content-Type", "")
            if _TEXT_TYPES.match(content_type):
                event["body"] = body.decode("utf-8", errors="replace")
            else:
                event["body"] = base64.b64encode(body).decode("ascii")
                event["isBase64Encoded"] = True
        return event

    # ----------------------------------------------------------------------------------- authorizers

    def _authorize(self, authorizer: AuthorizerSpec, event: dict[str, Any]) -> Response | None:
        """Run (or reuse) the authorizer's decision; ``None`` lets the request through."""
        identity = [self._identity_value(source, event) for source in authorizer.identity_source]
        if any(not value for value in identity):
            return _gateway_answer(401, "Unauthorized")
        key = (authorizer.logical_id, tuple(identity))  # type: ignore[arg-type]
        now = self.clock.now()
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None and cached.expires <= now:
                del self._cache[key]
                cached = None
        if cached is None:
            decision = self._run_authorizer(authorizer, event, identity)  # type: ignore[arg-type]
            if decision is None:
                return _gateway_answer(500, "Internal Server Error")
            cached = _CachedDecision(now + timedelta(seconds=authorizer.ttl_seconds), *decision)
            if authorizer.ttl_seconds > 0:
                with self._cache_lock:
                    self._cache[key] = cached
        if not cached.authorized:
            return _gateway_answer(403, "Forbidden")
        event["requestContext"]["authorizer"] = {"lambda": cached.context}
        return None

    def _run_authorizer(
        self, authorizer: AuthorizerSpec, event: dict[str, Any], identity: list[str]
    ) -> tuple[bool, dict[str, Any]] | None:
        method, path = event["requestContext"]["http"]["method"], event["rawPath"]
        request = {
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": f"arn:aws:execute-api:{self.region}:{ACCOUNT_ID}:{API_ID}/$default/{method}{path}",
            "identitySource": identity,
            **{k: v for k, v in event.items() if k not in ("version", "isBase64Encoded", "body")},
        }
        self.authorizer_invocations[authorizer.logical_id] += 1
        outcome = self.runner.invoke(authorizer.function, request)
        result = outcome.result
        if not outcome.ok or not isinstance(result, dict):
            return None
        context = result.get("context") or {}
        if authorizer.simple_responses:
            if not isinstance(result.get("isAuthorized"), bool):
                return None
            return result["isAuthorized"], context
        return _policy_allows(result.get("policyDocument"), request["routeArn"]), context

    @staticmethod
    def _identity_value(source: str, event: dict[str, Any]) -> str | None:
        if source.startswith("$request.header."):
            return event["headers"].get(source.removeprefix("$request.header.").lower())
        if source.startswith("$request.querystring."):
            return event.get("queryStringParameters", {}).get(source.removeprefix("$request.querystring."))
        if source.startswith("$context."):
            context = event["requestContext"]
            values = {
                "path": event["rawPath"],
                "httpMethod": context["http"]["method"],
                "routeKey": context["routeKey"],
                "stage": context["stage"],
                "domainName": context["domainName"],
                "apiId": context["apiId"],
                "accountId": context["accountId"],
                "identity.sourceIp": context["http"]["sourceIp"],
            }
            return values.get(source.removeprefix("$context."))
        return None  # $stageVariables: the sandbox's $default stage has none


def _policy_allows(document: Any, route_arn: str) -> bool:
    """An IAM-policy authorizer answer: allowed if a statement allows the route and none denies it."""
    if not isinstance(document, dict):
        return False
    allowed = False
    for statement in document.get("Statement", []):
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if any(fnmatch.fnmatchcase(route_arn, pattern) for pattern in resources):
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _http_response(result: Any) -> Response:
    """A v2.0 integration answer → the HTTP response API Gateway sends."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # No statusCode: API Gateway answers 200 with the function's result as the JSON body.
        return Response(json.dumps(result), status=200, content_type="application/json")
    status = int(result["statusCode"])
    headers = result.get("headers") or {}
    if not isinstance(headers, dict):
        raise TypeError("headers must be an object")
    body = result.get("body") or ""
    if not isinstance(body, str):
        raise TypeError("body must be a string")
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    response = Response(data, status=status)
    response.headers.remove("Content-Type")
    for name, value in headers.items():
        response.headers[str(name)] = str(value)
    if "Content-Type" not in response.headers:
        response.headers["Content-Type"] = "application/json"
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", str(cookie))
    return response
