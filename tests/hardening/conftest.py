"""Fixtures of the hardening checks: the embedded system (one per test module, over real HTTP) and
helpers to read what it stores and how its gateway answered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.scenario import Product, SandboxClient
from sandbox.system import EmbeddedSystem

SLOTS = {"Filter": Product("B0HFILTER1", 100, "L"), "Cleaner": Product("B0HCLEAN01", 500, "ml")}
MODEL_ID = "HardeningPurifier"
# API Gateway's own answers (no route, no identity, denied, too large) carry {"message"}; answers of a
# function carry the header the gateway adds to them.
GATEWAY_STATUSES = frozenset({401, 403, 404, 413})
FUNCTION_ANSWER_HEADER = "apigw-requestid"


@pytest.fixture(scope="module")
def system() -> Iterator[EmbeddedSystem]:
    """The whole product on loopback: the template deployed into moto, the simulator, the gateway."""
    # DRS faults in these modules are retried by the client in wall-clock time: a short budget.
    with EmbeddedSystem(
        gateway_port=0, simulator_port=0, environment={"HTTP_MAX_TOTAL_SECONDS": "0.2"}
    ) as started:
        yield started


@pytest.fixture(scope="module")
def client(system: EmbeddedSystem) -> SandboxClient:
    return SandboxClient.for_system(system)


def table_snapshot(system: EmbeddedSystem) -> dict[str, list[dict[str, Any]]]:
    """Every item of every table, sorted: equal snapshots mean nothing was stored or changed."""
    resources = system.resources
    assert resources is not None
    dynamodb = resources.client("dynamodb")
    snapshot = {}
    for table in resources.tables.values():
        items = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=table.name, ConsistentRead=True):
            items.extend(page["Items"])
        snapshot[table.logical_id] = sorted(items, key=repr)
    return snapshot


def answer_problems(response: requests.Response) -> list[str]:
    """What is wrong with an answer: a 5xx, or a 4xx without the error shape of its author."""
    status = response.status_code
    if status >= 500:
        return [f"answered {status}: {response.text[:300]}"]
    if status < 400:
        return []
    try:
        body = response.json()
    except ValueError:
        return [f"{status} with a body that is not JSON: {response.text[:200]!r}"]
    if FUNCTION_ANSWER_HEADER not in response.headers:
        if status not in GATEWAY_STATUSES:
            return [f"the gateway itself answered {status}"]
        if not (isinstance(body, dict) and isinstance(body.get("message"), str)):
            return [f"gateway {status} without {{'message'}}: {body!r}"]
        return []
    error = body.get("error") if isinstance(body, dict) else None
    if not (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and error["code"]
        and isinstance(error.get("message"), str)
    ):
        return [f"{status} without the error shape {{'error': {{'code', 'message'}}}}: {body!r}"]
    return []
