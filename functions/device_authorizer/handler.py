"""Device authorizer: allows requests bearing ``Authorization: Device <credential>`` of the path's serial.

API Gateway HTTP API Lambda authorizer, payload v2, simple responses. The identity source includes the
request path, so API Gateway's cached answer for serial A's credential is never reused for serial B.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerEventV2,
)

from drs_core import dependencies
from drs_core.observability import logger, metrics
from drs_core.paths import decoded_segment
from drs_core.services.authorization import authorize_device
from drs_core.settings import load_settings

load_settings(required=["STATE_TABLE"])


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@event_source(data_class=APIGatewayAuthorizerEventV2)
def handler(event: APIGatewayAuthorizerEventV2, context: Any) -> dict[str, Any]:
    path_serial = event.path_parameters.get("serial")
    # Decoded as the usage function decodes it (drs_core.paths): "%2B" and "+" are the same serial.
    serial = decoded_segment(path_serial) if path_serial is not None else None
    logger.append_keys(serial=serial, routeKey=event.route_key)
    decision = authorize_device(
        event.headers.get("authorization"),
        serial,
        repository=dependencies.repository(),
    )
    metrics.add_metric(
        name="DeviceAuthAllowed" if decision.allowed else "DeviceAuthDenied", unit="Count", value=1
    )
    return decision.simple_response()
