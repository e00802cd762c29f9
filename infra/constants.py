"""Names and sizes of the infrastructure, in one place."""

from __future__ import annotations

APP_NAME = "DrsReplenishment"
DEFAULT_STAGE = "dev"
# Powertools EMF namespace of every function's metrics (POWERTOOLS_METRICS_NAMESPACE).
METRICS_NAMESPACE = "DrsReplenishment"
# The Amazon account DRS publishes notifications from (docs/drs.md §4).
DRS_NOTIFICATION_ACCOUNT = "476877469412"
# Context lwaClientId until the deployer sets it; synth refuses it for stage prod.
PLACEHOLDER_LWA_CLIENT_ID = "amzn1.application-oa2-client.CHANGE_ME"

# Public HTTP API (infra/api.py). Stage-wide throttle, and a tighter one for linking (each call costs
# LWA and DRS round trips). Authorizer answers are cached this long unless context
# `authorizerCacheSeconds` says otherwise.
API_RATE_LIMIT = 1000
API_BURST_LIMIT = 2000
REGISTRATION_RATE_LIMIT = 20
REGISTRATION_BURST_LIMIT = 40
AUTHORIZER_CACHE_SECONDS = 300

# The companion web app's Content-Security-Policy (infra/webapp.py, and the sandbox's /app/): its own
# files only, fetch() to itself, the API and LWA's token endpoint ({connect}: those origins).
WEBAPP_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' {connect}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; "
    "object-src 'none'"
)
