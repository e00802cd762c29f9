"""Build the CDK app from context: shared by ``app.py``, ``make synth`` and the template tests."""

from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import Validations
from cdk_nag import AwsSolutionsChecks

ROOT = Path(__file__).resolve().parent.parent
# Infrastructure reads the runtime's shared constants (drs_core.schema) and validates its model catalog
# (drs_core.catalog), nothing else of it.
sys.path.insert(0, str(ROOT / "layers" / "core" / "python"))

from infra.constants import APP_NAME, DEFAULT_STAGE  # noqa: E402
from infra.stack import ReplenishmentStack  # noqa: E402


def build_app(context: dict | None = None, outdir: str | None = None, *, nag: bool = True) -> cdk.App:
    """The app with one stack per stage (``-c stage=…``), cdk-nag AwsSolutions attached."""
    app = cdk.App(context=context or {}, outdir=outdir)
    stage = app.node.try_get_context("stage") or DEFAULT_STAGE
    ReplenishmentStack(app, f"{APP_NAME}-{stage}", stage=stage)
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(verbose=True))
    return app
