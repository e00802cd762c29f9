"""API Gateway HTTP API's request path, reduced to what handler tests need: authorizer, then function.

As API Gateway does with a Lambda authorizer (simple responses): a request missing the Authorization
header never reaches the authorizer (401), ``isAuthorized: false`` answers 403, an allow passes the
authorizer's ``context`` to the route's function in ``requestContext.authorizer.lambda``. Routes
without an authorizer go straight to the function. API Gateway's own cache is not modelled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.http_events import authorizer_event, http_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    reached_function: bool = False

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None


@dataclass
class Route:
    method: str
    template: str
    function: Handler
    authorizer: Handler | None


class Gateway:
    """Routes requests to handlers the way the HTTP API's routes and authorizers are wired."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._routes: list[Route] = []

    def route(self, method: str, template: str, function: Handler, authorizer: Handler | None) -> None:
        self._routes.append(Route(method.upper(), template, function, authorizer))

    def _find(self, method: str, template: str) -> Route:
        for route in self._routes:
            if route.method == method.upper() and route.template == template:
                return route
        raise KeyError(f"no route {method} {template}")

    def request(
        self,
        method: str,
        template: str,
        path: str | None = None,
        *,
        authorization: str | None = None,
        **event_options: Any,
    ) -> Answer:
        """Send one request; ``event_options`` go to ``http_event`` (body, raw_body, query, headers...)."""
        route = self._find(method, template)
        context: dict[str, Any] | None = None
        if route.authorizer is not None:
            if not authorization:
                return Answer(401, {"message": "Unauthorized"})
            decision = route.authorizer(
                authorizer_event(method, template, path, authorization=authorization), self._context
            )
            if not decision.get("isAuthorized"):
                return Answer(403, {"message": "Forbidden"})
            context = decision.get("context") or {}
        event = http_event(
            method, template, path, authorization=authorization, authorizer_context=context, **event_options
        )
        result = route.function(event, self._context)
        raw = result.get("body")
        body = json.loads(raw) if raw else None
        return Answer(int(result["statusCode"]), body, dict(result.get("headers") or {}), True)
