"""The served OpenAPI document is the whole contract (issue 16 §4): every route, the device route too,
each with the status codes the API really answers, the error schema, and API Gateway's own answers."""

from __future__ import annotations

import importlib
from typing import Any

from drs_core.api import openapi
from tests.support import api_fixtures
from tests.support.api_fixtures import COMPANION_ROUTES, OPENAPI, USAGE, Api

api = api_fixtures.api
simulator = api_fixtures.simulator

SUCCESS = {
    ("post", "/v1/devices/{serial}/registration"): "201",
    ("delete", "/v1/devices/{serial}/registration"): "204",
}


def _document(api: Api) -> dict[str, Any]:
    answer = api.request("GET", OPENAPI)
    assert answer.status == 200
    return answer.body


def test_the_document_holds_every_route_the_api_serves(api: Api) -> None:
    # When anyone fetches the document
    document = _document(api)

    # Then every route is in it, the device route (another function's) included
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    served = {(method.lower(), template) for method, template in [*COMPANION_ROUTES, ("POST", USAGE)]}
    assert documented == served
    assert document["paths"][USAGE]["post"]["security"] == [{"device": []}]


def test_each_operation_documents_the_statuses_it_answers_with_their_shapes(api: Api) -> None:
    document = _document(api)
    schemas = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            # The success code the API answers, never Powertools' 422 or a bare 500
            success = SUCCESS.get((method, path), "202" if path == USAGE else "200")
            assert success in responses, (method, path)
            assert not {"422", "500"} & set(responses) or path == USAGE, (method, path, sorted(responses))
            # Every error in the error shape; what API Gateway answers itself in {"message"}
            assert {"401", "403"} <= set(responses), (method, path)
            assert "400" in responses or "{" not in path, (method, path)
            gateway_401 = responses["401"]["content"]["application/json"]["schema"]
            assert gateway_401 == {"$ref": "#/components/schemas/GatewayMessage"}
            for status, response in responses.items():
                if status.startswith(("4", "5")) and status != "401":
                    schema = response["content"]["application/json"]["schema"]
                    refs = [schema.get("$ref")] + [c["$ref"] for c in schema.get("oneOf", [])]
                    assert "#/components/schemas/ErrorResponse" in refs, (method, path, status)
    assert schemas["ErrorResponse"]["required"] == ["error"]
    assert schemas["ErrorDetail"]["required"] == ["code", "message"]
    assert schemas["GatewayMessage"]["required"] == ["message"]
    assert "HTTPValidationError" not in schemas
    # The usage route: its conflict, key reuse and busy slot
    assert {"409", "413", "422", "503"} <= set(document["paths"][USAGE]["post"]["responses"])


def test_the_constraints_the_code_enforces_are_in_the_document(api: Api) -> None:
    schemas = _document(api)["components"]["schemas"]
    reading = schemas["ReadingModel"]["properties"]
    assert reading["consumedQuantity"]["anyOf"][0]["minimum"] == 1e-6
    assert schemas["UsageRequest"]["properties"]["readings"]["maxItems"] == 100
    registration = schemas["RegistrationRequest"]
    assert registration["additionalProperties"] is False and "pairingCode" in registration["properties"]


def test_the_usage_functions_own_document_agrees_with_the_served_one(api: Api) -> None:
    # Given the usage function's own resolver, and the declaration the companion function serves
    usage = importlib.import_module("functions.usage_ingestion.handler")
    own = openapi.finish_document(
        usage.app.get_openapi_schema(
            title="t", version="1", security_schemes=openapi.SECURITY_SCHEMES
        ).model_dump(mode="json", by_alias=True, exclude_none=True)
    )["paths"][USAGE]["post"]
    served = _document(api)["paths"][USAGE]["post"]

    # Then path parameters, body, success and security are the same
    assert [p for p in served["parameters"] if p["in"] == "path"] == own["parameters"]
    assert served["requestBody"] == own["requestBody"]
    assert served["responses"]["202"] == own["responses"]["202"]
    assert served["security"] == own["security"] and served["summary"] == own["summary"]
