"""Fuzzing the HTTP API through the local gateway (real HTTP, real authorizers, valid credentials).

Requests are generated from the OpenAPI document the companion function serves (``GET
/v1/openapi.json``): every operation, its path and query parameters and its JSON body drawn from the
document's schemas, then mutated (fields dropped, unknown fields added, values of any JSON type,
arbitrary path segments, bodies that are not JSON). The usage route, served by another function and so
not in that document, gets hand-written strategies: readings valid and not, mixed in one request, NaN
and infinities, unknown fields, too many readings, odd ``Idempotency-Key`` headers, oversized bodies.

For every answer: never a 5xx; a function's 4xx carries ``{"error": {"code", "message"}}``, API
Gateway's own carries ``{"message"}``; and a rejected request stored nothing (every table scanned
before and after). Short form here; ``--full`` multiplies the examples and the sizes.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.scenario import LinkedDevice, SandboxClient
from sandbox.system import EmbeddedSystem
from tests.hardening.conftest import (
    FUNCTION_ANSWER_HEADER,
    MODEL_ID,
    SLOTS,
    answer_problems,
    table_snapshot,
)

SHORT_EXAMPLES, FULL_EXAMPLES = 50, 600
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
# Path segments a client could send: plausible identifiers, and anything at all (percent-encoded).
ODD_SEGMENTS = st.text(min_size=1, max_size=80).map(lambda text: quote(text, safe=""))


# ------------------------------------------------------------------------------ the system under test


@pytest.fixture(scope="module")
def owner(system: EmbeddedSystem, client: SandboxClient) -> LinkedDevice:
    """A customer's linked device: its owner's bearer and its device credential are the valid auth."""
    customer = client.create_customer("fuzz owner")
    return client.link_device(customer, MODEL_ID, "FUZZ00001", SLOTS)


@pytest.fixture(scope="module")
def openapi(system: EmbeddedSystem) -> dict[str, Any]:
    answer = requests.get(f"{system.gateway_url}/v1/openapi.json", timeout=10)
    assert answer.status_code == 200
    return answer.json()


def _send(
    system: EmbeddedSystem,
    method: str,
    path: str,
    *,
    authorization: str,
    query: dict[str, str] | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    sent = {"Authorization": authorization, "Content-Type": "application/json", **(headers or {})}
    return requests.request(
        method, system.gateway_url + path, params=query, data=body, headers=sent, timeout=30
    )


def _checked(system: EmbeddedSystem, send: Any, seen: Counter[str] | None = None) -> requests.Response:
    """Send, then check the answer's shape and that a rejected request stored nothing."""
    before = table_snapshot(system)
    response = send()
    if seen is not None:
        author = "function" if FUNCTION_ANSWER_HEADER in response.headers else "gateway"
        seen[f"{author} {response.status_code}"] += 1
    problems = answer_problems(response)
    if 400 <= response.status_code < 500:
        after = table_snapshot(system)
        if after != before:
            changed = [name for name in before if before[name] != after.get(name)]
            problems.append(f"a rejected request ({response.status_code}) changed {changed}")
    assert not problems, f"{response.request.method} {response.request.url}: {problems}"
    return response


# ------------------------------------------------------------------------------ strategies from the document


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def from_schema(schema: dict[str, Any], document: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for a JSON schema (the subset pydantic writes: objects, anyOf, strings with a pattern
    or lengths, bounded numbers, booleans, null, arrays)."""
    schema = _resolve(schema, document)
    if "anyOf" in schema or "oneOf" in schema:
        return st.one_of([from_schema(s, document) for s in schema.get("anyOf", schema.get("oneOf"))])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        fields = {
            name: from_schema(sub, document) if name in required else st.none() | from_schema(sub, document)
            for name, sub in properties.items()
        }
        return st.fixed_dictionaries(fields).map(
            lambda value: {k: v for k, v in value.items() if k in required or v is not None}
        )
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(
            alphabet=st.characters(blacklist_categories=("Cs",)),
            min_size=schema.get("minLength", 0),
            max_size=min(schema.get("maxLength", 60), 60),
        )
    if kind in ("number", "integer"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if kind == "integer":
            return st.integers(min_value=low, max_value=high)
        return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), document), max_size=4)
    return ANY_JSON


def mutated(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value, or one broken the ways clients break them."""

    def break_object(base: dict[str, Any], data: st.DataObject) -> Any:
        how = data.draw(st.sampled_from(["keep", "drop", "unknown", "retype"]))
        if how == "drop" and base:
            base.pop(data.draw(st.sampled_from(sorted(base))))
        elif how == "unknown":
            base[data.draw(st.text(min_size=1, max_size=12))] = data.draw(ANY_JSON)
        elif how == "retype" and base:
            base[data.draw(st.sampled_from(sorted(base)))] = data.draw(ANY_JSON)
        return base

    objects = st.tuples(value, st.data()).map(
        lambda pair: break_object(pair[0], pair[1]) if isinstance(pair[0], dict) else pair[0]
    )
    return st.one_of(objects, objects, ANY_JSON)


@st.composite
def operations(draw: st.DrawFn, document: dict[str, Any], serial: str) -> tuple[str, str, dict, bytes | None]:
    """One request to one operation of the document: (method, path, query, body)."""
    choices = [
        (method.upper(), path, operation)
        for path, item in sorted(document["paths"].items())
        for method, operation in sorted(item.items())
    ]
    method, template, operation = draw(st.sampled_from(choices))
    path = template
    query: dict[str, str] = {}
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        if parameter["in"] == "path":
            options = [from_schema(schema, document).map(lambda v: quote(str(v), safe="")), ODD_SEGMENTS]
            # The real serial reaches the device; not for unlinking, which would end the fuzzing.
            if parameter["name"] == "serial" and (method, template) != (
                "DELETE",
                "/v1/devices/{serial}/registration",
            ):
                options.append(st.just(serial))
            if parameter["name"] == "slotId":
                options.append(st.sampled_from(sorted(SLOTS)))
            path = path.replace("{" + parameter["name"] + "}", draw(st.one_of(options)))
        elif parameter["in"] == "query" and draw(
            st.booleans() if not parameter.get("required") else st.just(True)
        ):
            query[parameter["name"]] = str(
                draw(st.one_of(from_schema(schema, document), st.text(max_size=30)))
            )
    body: bytes | None = None
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content:
        shape = draw(st.sampled_from(["schema", "schema", "not json", "none"]))
        if shape == "schema":
            body = json.dumps(draw(mutated(from_schema(content["schema"], document)))).encode()
        elif shape == "not json":
            body = draw(st.binary(max_size=64))
    return method, path, query, body


# ------------------------------------------------------------------------------ the usage route


def _iso(moment: Any) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


QUANTITIES = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 10**20) | ANY_JSON


@st.composite
def readings(draw: st.DrawFn) -> dict[str, Any]:
    """A reading, valid or not: slot, time, exactly one quantity (or none, or two), extras."""
    reading: dict[str, Any] = {
        "slotId": draw(st.sampled_from(sorted(SLOTS)) | st.text(max_size=140) | ANY_JSON),
        "observedAt": draw(
            st.datetimes(min_value=datetime(1990, 1, 1)).map(_iso)
            | st.text(alphabet=string.printable, max_size=30)
            | ANY_JSON
        ),
    }
    kinds = draw(
        st.lists(
            st.sampled_from(["remainingQuantity", "consumedQuantity", "refilledQuantity"]),
            unique=True,
            max_size=2,
        )
    )
    for kind in kinds:
        reading[kind] = draw(st.floats(min_value=0, max_value=1000, allow_nan=False) | QUANTITIES)
    if draw(st.booleans()):
        reading["originalQuantity"] = draw(st.floats(0, 1000, allow_nan=False) | QUANTITIES)
    if draw(st.integers(0, 9)) == 0:
        reading[draw(st.text(min_size=1, max_size=12))] = draw(ANY_JSON)
    if draw(st.integers(0, 9)) == 0:
        reading.pop(draw(st.sampled_from(sorted(reading))))
    return reading


@st.composite
def valid_readings(draw: st.DrawFn) -> dict[str, Any]:
    """A reading the API accepts: a known slot, a time, exactly one positive quantity."""
    kind = draw(st.sampled_from(["remainingQuantity", "consumedQuantity", "refilledQuantity"]))
    low = 0.0 if kind == "remainingQuantity" else 0.001
    return {
        "slotId": draw(st.sampled_from(sorted(SLOTS))),
        "observedAt": _iso(
            draw(st.datetimes(min_value=datetime(2025, 6, 1), max_value=datetime(2026, 1, 1)))
        ),
        kind: draw(st.floats(min_value=low, max_value=100, allow_nan=False)),
    }


def usage_bodies(max_readings: int) -> st.SearchStrategy[bytes]:
    valid = st.lists(valid_readings(), min_size=1, max_size=max_readings).map(
        lambda items: {"readings": items}
    )
    body = st.lists(readings() | valid_readings(), max_size=max_readings).map(
        lambda items: {"readings": items}
    )
    return st.one_of(
        valid.map(lambda value: json.dumps(value).encode()),
        body.map(lambda value: json.dumps(value).encode()),  # NaN/Infinity: not JSON, as some clients send
        body.map(lambda value: json.dumps({**value, "extra": 1}).encode()),
        ANY_JSON.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=80),
        st.integers(70_000, 90_000).map(lambda size: b'{"readings": [' + b" " * size + b"]}"),
    )


IDEMPOTENCY_KEYS = st.one_of(
    st.none(),
    st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=40),
    st.just(""),
    st.text(alphabet=string.ascii_letters, min_size=256, max_size=300),
)


# ------------------------------------------------------------------------------ the tests


def test_the_openapi_operations_never_fail_and_reject_cleanly(
    system: EmbeddedSystem, owner: LinkedDevice, openapi: dict[str, Any], full_size: bool
) -> None:
    # Given the companion routes of the OpenAPI document and the owner's valid bearer token
    bearer = f"Bearer {owner.customer.app_token}"
    assert len(openapi["paths"]) >= 6
    seen: Counter[str] = Counter()

    @settings(
        max_examples=FULL_EXAMPLES if full_size else SHORT_EXAMPLES,
        deadline=None,
        derandomize=not full_size,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=operations(openapi, owner.serial))
    def fuzz(request: tuple[str, str, dict, bytes | None]) -> None:
        method, path, query, body = request
        # When the request goes through the gateway
        # Then no 5xx, the error shape on every 4xx, nothing stored by a rejection
        _checked(
            system, lambda: _send(system, method, path, authorization=bearer, query=query, body=body), seen
        )

    fuzz()
    assert not [status for status in system.http_statuses if status >= 500]
    # And the fuzzing reached the function both ways (it did not only meet the gateway's 404s)
    assert seen["function 400"] and seen["function 404"] and seen["function 200"], seen


def test_the_usage_route_never_fails_and_rejects_cleanly(
    system: EmbeddedSystem, owner: LinkedDevice, full_size: bool
) -> None:
    # Given the device's own credential and the usage route (not in the companion document)
    device = f"Device {owner.device_token}"
    path = f"/v1/devices/{owner.serial}/usage"
    seen: Counter[str] = Counter()

    @settings(
        max_examples=FULL_EXAMPLES if full_size else SHORT_EXAMPLES,
        deadline=None,
        derandomize=not full_size,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=usage_bodies(120 if full_size else 6), key=IDEMPOTENCY_KEYS)
    def fuzz(body: bytes, key: str | None) -> None:
        headers = {"Idempotency-Key": key} if key is not None else None
        # When the device posts it
        # Then no 5xx, the error shape on every 4xx, nothing stored by a rejection
        _checked(
            system,
            lambda: _send(system, "POST", path, authorization=device, body=body, headers=headers),
            seen,
        )

    fuzz()
    # And both accepted and refused requests were among them
    assert seen["function 202"] and seen["function 400"] and seen["function 413"], seen


def test_a_request_with_one_bad_reading_among_good_ones_stores_nothing(
    system: EmbeddedSystem, owner: LinkedDevice
) -> None:
    # Given a request whose first reading is valid and whose second is not (two quantities)
    now = "2026-01-01T00:00:00.000Z"
    body = {
        "readings": [
            {"slotId": "Filter", "observedAt": now, "remainingQuantity": 50},
            {"slotId": "Cleaner", "observedAt": now, "remainingQuantity": 5, "consumedQuantity": 1},
        ]
    }

    # When the device posts it
    response = _checked(
        system,
        lambda: _send(
            system,
            "POST",
            f"/v1/devices/{owner.serial}/usage",
            authorization=f"Device {owner.device_token}",
            body=json.dumps(body).encode(),
        ),
    )

    # Then the whole request is refused (and _checked saw no table change)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_REQUEST"
