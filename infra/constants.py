"""Names and sizes of the infrastructure, in one place."""

from __future__ import annotations

APP_NAME = "DrsReplenishment"
DEFAULT_STAGE = "dev"
# The Amazon account DRS publishes notifications from (reference/drs-api.md §4).
DRS_NOTIFICATION_ACCOUNT = "476877469412"
