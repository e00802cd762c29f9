#!/usr/bin/env python3
"""CDK entry point: composes the stack(s); settings come from context (cdk.json, -c key=value)."""

from infra.app_factory import build_app

build_app().synth()
