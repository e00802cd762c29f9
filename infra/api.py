"""The public HTTP API (docs/api.md §1): API Gateway HTTP API, its two Lambda authorizers, the companion
app's function, route throttling and access logs.

Other concerns add their routes through ``add_companion_route`` (LWA bearer of the app user) and
``add_device_route`` (``Device <token>``, bound to the ``{serial}`` of the path).

CORS: none unless origins are allowed (context ``allowedOrigins``, or ``allow_origin`` by another
construct, e.g. the one hosting the web app); then API Gateway answers the browsers' preflight requests
for those origins with the headers the API reads (``CORS_ALLOWED_HEADERS``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from drs_core import schema
from infra.constants import (
    API_BURST_LIMIT,
    API_RATE_LIMIT,
    AUTHORIZER_CACHE_SECONDS,
    REGISTRATION_BURST_LIMIT,
    REGISTRATION_RATE_LIMIT,
)
from infra.context import whole_number
from infra.data import Data
from infra.functions import ReplenishmentFunction, SharedLayers
from infra.nag import acknowledge

REGISTRATION_PATH = "/v1/devices/{serial}/registration"
OPENAPI_PATH = "/v1/openapi.json"
# Every companion route of docs/api.md §1, served by the one companion function.
COMPANION_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", REGISTRATION_PATH),
    ("DELETE", REGISTRATION_PATH),
    ("GET", "/v1/devices"),
    ("GET", "/v1/devices/{serial}"),
    ("GET", "/v1/devices/{serial}/settings-link"),
    ("PUT", "/v1/devices/{serial}/slots/{slotId}/policy"),
    ("DELETE", "/v1/devices/{serial}/test-orders"),
    ("DELETE", "/v1/devices/{serial}/test-orders/{slotId}"),
)

# What a browser app may send cross-origin: its bearer token, JSON bodies, and idempotency keys.
CORS_ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
CORS_ALLOWED_METHODS = ["GET", "POST", "PUT", "DELETE"]
# Browsers may cache a preflight answer this long (they cap it themselves: 2 h in Chromium).
CORS_MAX_AGE_SECONDS = 3600
# An origin is a scheme, a host and an optional port; no path, no wildcard.
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
# API Gateway's limit on an authorizer's result cache.
AUTHORIZER_CACHE_RANGE = (0, 3600)

# API Gateway caches an authorizer's answer per distinct value of these. The device authorizer's
# includes the request path, so a cached "allow" for serial A's token never answers for serial B.
COMPANION_IDENTITY_SOURCE = ["$request.header.Authorization"]
DEVICE_IDENTITY_SOURCE = ["$request.header.Authorization", "$context.path"]

# One JSON line per request. No headers and no query string: those may carry tokens.
_ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "routeKey": "$context.routeKey",
    "path": "$context.path",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
    "userId": "$context.authorizer.userId",
}


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """The stage's access-log destination and format (the interface has no concrete class)."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FORMAT))


class Api(Construct):
    """The HTTP API with its authorizers, the companion function and its routes.

    ``http_api``, ``url``, ``add_companion_route`` and ``add_device_route`` are what other concerns use.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: Data,
        layers: SharedLayers,
        lwa_client_id: str,
        lwa_client_secret_name: str,
        endpoints: dict[str, str] | None = None,
        allowed_origins: Sequence[str] = (),
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
    ) -> None:
        super().__init__(scope, construct_id)
        self._data = data
        self._layers = layers
        self._removal_policy = removal_policy
        self._lwa_client_id = lwa_client_id
        self._secret_name = lwa_client_secret_name
        # DRS_ENDPOINT / LWA_ENDPOINT / DRS_WEB_ENDPOINT overrides; the runtime defaults are Amazon's.
        self._endpoints = dict(endpoints or {})
        self._route_throttles: dict[str, dict[str, float]] = {}
        self._integrations: dict[str, integrations.HttpLambdaIntegration] = {}
        self._routes: dict[str, list[apigwv2.HttpRoute]] = {}
        cache_seconds = authorizer_cache_seconds(self)

        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"{Stack.of(self).stack_name}-api",
            description="DRS replenishment: companion app and device API",
            create_default_stage=False,
        )
        self._allowed_origins: list[str] = []
        for origin in allowed_origins:
            self.allow_origin(origin)
        self.access_logs = self._build_access_logs()
        self.stage = self._build_stage()
        self.url: str = self.stage.url

        self.companion_authorizer_function = self._build_companion_authorizer_function()
        self.device_authorizer_function = self._build_device_authorizer_function()
        self.companion_authorizer = authorizers.HttpLambdaAuthorizer(
            "CompanionAuthorizer",
            self.companion_authorizer_function.function,
            authorizer_name="companion",
            identity_source=COMPANION_IDENTITY_SOURCE,
            response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            results_cache_ttl=Duration.seconds(cache_seconds),
        )
        self.device_authorizer = authorizers.HttpLambdaAuthorizer(
            "DeviceAuthorizer",
            self.device_authorizer_function.function,
            authorizer_name="device",
            identity_source=DEVICE_IDENTITY_SOURCE,
            response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            results_cache_ttl=Duration.seconds(cache_seconds),
        )
        self.companion_api_function = self._build_companion_api_function()
        self._add_companion_routes()

    # --- what other concerns call ---------------------------------------------------------------------

    def add_companion_route(self, method: str, path: str, function: lambda_.IFunction) -> None:
        """Route ``method path`` to ``function`` behind the companion (LWA bearer) authorizer."""
        self._add_route(method, path, function, self.companion_authorizer)

    def add_device_route(self, method: str, path: str, function: lambda_.IFunction) -> None:
        """Route ``method path`` (which must contain ``{serial}``) behind the device authorizer."""
        if "{serial}" not in path:
            raise ValueError("a device route must carry {serial}: the device token is bound to it")
        self._add_route(method, path, function, self.device_authorizer)

    @property
    def allowed_origins(self) -> list[str]:
        """The origins browsers may call the API from (empty: no CORS)."""
        return list(self._allowed_origins)

    def allow_origin(self, origin: str) -> None:
        """Let browser code served from ``origin`` (``https://app.example.com``) call the API.

        ``origin`` may be a token (a CloudFront distribution's domain, say), checked at deploy time only.
        """
        if not Token.is_unresolved(origin) and not _ORIGIN.match(origin):
            raise ValueError(
                f"CORS origin {origin!r}: expected scheme://host[:port], e.g. https://app.example.com "
                "(no path, no wildcard)"
            )
        if origin not in self._allowed_origins:
            self._allowed_origins.append(origin)
        cfn_api: apigwv2.CfnApi = self.http_api.node.default_child  # type: ignore[assignment]
        cfn_api.cors_configuration = apigwv2.CfnApi.CorsProperty(
            allow_origins=list(self._allowed_origins),
            allow_headers=CORS_ALLOWED_HEADERS,
            allow_methods=CORS_ALLOWED_METHODS,
            max_age=CORS_MAX_AGE_SECONDS,
            # Bearer tokens travel in a header, never in cookies.
            allow_credentials=False,
        )

    def throttle_route(self, method: str, path: str, *, rate_limit: float, burst_limit: int) -> None:
        """Give an added route its own throttle instead of the stage default."""
        route_key = f"{method.upper()} {path}"
        if route_key not in self._routes:
            raise ValueError(f"no route {route_key} to throttle")
        self._route_throttles[route_key] = {
            "ThrottlingRateLimit": rate_limit,
            "ThrottlingBurstLimit": burst_limit,
        }
        cfn_stage: apigwv2.CfnStage = self.stage.node.default_child  # type: ignore[assignment]
        cfn_stage.route_settings = dict(self._route_throttles)
        # A stage's route settings may only name routes that exist already.
        for route in self._routes[route_key]:
            self.stage.node.add_dependency(route)

    # --- builders -------------------------------------------------------------------------------------

    def _add_route(
        self,
        method: str,
        path: str,
        function: lambda_.IFunction,
        authorizer: apigwv2.IHttpRouteAuthorizer | None,
    ) -> list[apigwv2.HttpRoute]:
        routes = self.http_api.add_routes(
            path=path,
            methods=[apigwv2.HttpMethod(method.upper())],
            integration=self._integration(function),
            authorizer=authorizer or apigwv2.HttpNoneAuthorizer(),
        )
        self._routes.setdefault(f"{method.upper()} {path}", []).extend(routes)
        return routes

    def _integration(self, function: lambda_.IFunction) -> integrations.HttpLambdaIntegration:
        # One integration per function, shared by all of its routes.
        key = function.node.path
        if key not in self._integrations:
            self._integrations[key] = integrations.HttpLambdaIntegration(
                f"{function.node.id}Integration",
                function,
                payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
            )
        return self._integrations[key]

    def _build_access_logs(self) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            "AccessLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=self._removal_policy,
        )

    def _build_stage(self) -> apigwv2.HttpStage:
        return apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            access_log_settings=_AccessLogSettings(self.access_logs),
            throttle=apigwv2.ThrottleSettings(rate_limit=API_RATE_LIMIT, burst_limit=API_BURST_LIMIT),
        )

    def _build_companion_authorizer_function(self) -> ReplenishmentFunction:
        return ReplenishmentFunction(
            self,
            "CompanionAuthorizerFn",
            name="companion_authorizer",
            description="Verifies the companion app user's LWA access token (tokeninfo, audience check)",
            layers=self._layers,
            # tokeninfo needs no client secret: this function gets neither the secret nor any table.
            environment={"LWA_CLIENT_ID": self._lwa_client_id, **self._endpoints},
            removal_policy=self._removal_policy,
        )

    def _build_device_authorizer_function(self) -> ReplenishmentFunction:
        fn = ReplenishmentFunction(
            self,
            "DeviceAuthorizerFn",
            name="device_authorizer",
            description="Verifies a device credential against its serial's stored hash",
            layers=self._layers,
            environment={"STATE_TABLE": self._data.state_table.table_name},
            removal_policy=self._removal_policy,
        )
        # One GetItem per uncached request; the table is encrypted with the data key.
        fn.role.add_to_policy(
            iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[self._data.state_table.table_arn])
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(actions=["kms:Decrypt"], resources=[self._data.key.key_arn])
        )
        return fn

    def _build_companion_api_function(self) -> ReplenishmentFunction:
        fn = ReplenishmentFunction(
            self,
            "CompanionApiFn",
            name="companion_api",
            description="Companion app routes: linking (LWA token exchange), unlinking, reads, settings",
            layers=self._layers,
            environment={
                **self._data.token_environment(self._lwa_client_id, self._secret_name),
                **self._endpoints,
                **self._linking_environment(),
            },
            timeout=Duration.seconds(20),
            removal_policy=self._removal_policy,
        )
        state, tokens = self._data.state_table, self._data.tokens_table
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
                resources=[state.table_arn],
            )
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"],
                resources=[f"{state.table_arn}/index/{schema.OWNER_INDEX}"],
            )
        )
        self._data.grant_token_refresh(fn, self._secret_name)
        # Unlinking deletes the device's tokens.
        fn.role.add_to_policy(
            iam.PolicyStatement(actions=["dynamodb:DeleteItem"], resources=[tokens.table_arn])
        )
        return fn

    def _linking_environment(self) -> dict[str, str]:
        """Context ``requirePairingCode`` (default true: linking proves possession of the device) and
        ``settingsExitSchemes`` (the companion app's own URI schemes the settings page may return to,
        comma-separated; https is always allowed)."""
        context = self.node.try_get_context("requirePairingCode")
        required = "true" if context is None else str(context).lower()
        if required not in ("true", "false"):
            raise ValueError("context requirePairingCode must be true or false")
        environment = {"REQUIRE_PAIRING_CODE": required}
        schemes = self.node.try_get_context("settingsExitSchemes")
        if schemes:
            environment["SETTINGS_EXIT_SCHEMES"] = str(schemes)
        return environment

    def _add_companion_routes(self) -> None:
        fn = self.companion_api_function.function
        for method, path in COMPANION_ROUTES:
            self.add_companion_route(method, path, fn)
        for route in self._add_route("GET", OPENAPI_PATH, fn, None):
            acknowledge(
                route,
                "AwsSolutions-APIG4",
                "The OpenAPI document describes the public contract only; it holds no customer data and "
                "clients fetch it before they have a token.",
            )
        self.throttle_route(
            "POST",
            REGISTRATION_PATH,
            rate_limit=REGISTRATION_RATE_LIMIT,
            burst_limit=REGISTRATION_BURST_LIMIT,
        )


def authorizer_cache_seconds(scope: Construct) -> int:
    """Context ``authorizerCacheSeconds`` (default 300; 0 turns caching off), within API Gateway's range."""
    low, high = AUTHORIZER_CACHE_RANGE
    return whole_number(scope, "authorizerCacheSeconds", default=AUTHORIZER_CACHE_SECONDS, low=low, high=high)


def allowed_origins_from_context(scope: Construct) -> list[str]:
    """Context ``allowedOrigins``: a JSON list (cdk.json) or a comma-separated string (``-c``); none by
    default."""
    raw = scope.node.try_get_context("allowedOrigins")
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        text = raw.strip()
        raw = json.loads(text) if text.startswith("[") else [part.strip() for part in text.split(",")]
    if not isinstance(raw, list) or not all(isinstance(origin, str) and origin for origin in raw):
        raise ValueError(f"context allowedOrigins={raw!r}: expected origins, comma-separated or a JSON list")
    return raw
