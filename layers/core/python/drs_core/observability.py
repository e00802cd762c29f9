"""The one Logger and Metrics every function imports (Powertools; JSON logs, EMF metrics).

Tracing is not wired here: the X-Ray SDK adds ~114 ms to a cold start (measured: infra/functions.py),
so it is off.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "DrsReplenishment")

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "drs-backend"))
metrics = Metrics(namespace=NAMESPACE)
