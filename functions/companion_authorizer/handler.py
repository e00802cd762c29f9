"""Companion authorizer: allows requests bearing an LWA access token issued to our client id.

API Gateway HTTP API Lambda authorizer, payload v2, simple responses; the context's ``userId`` (the LWA
``user_id``) reaches the route's function. Verified tokens are also cached in this process.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerEventV2,
)

from drs_core import dependencies
from drs_core.observability import logger, metrics
from drs_core.services.authorization import UserTokenCache, authorize_companion
from drs_core.settings import load_settings, settings

load_settings(required=["LWA_CLIENT_ID"])
# Lives as long as the execution environment; entries never outlive the token or 5 minutes.
TOKEN_CACHE = UserTokenCache()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@event_source(data_class=APIGatewayAuthorizerEventV2)
def handler(event: APIGatewayAuthorizerEventV2, context: Any) -> dict[str, Any]:
    logger.append_keys(routeKey=event.route_key)
    decision = authorize_companion(
        event.headers.get("authorization"),
        client_id=settings().lwa_client_id or "",
        verifier=dependencies.lwa_client(),
        cache=TOKEN_CACHE,
    )
    metrics.add_metric(
        name="CompanionAuthAllowed" if decision.allowed else "CompanionAuthDenied", unit="Count", value=1
    )
    return decision.simple_response()
