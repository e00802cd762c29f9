"""docs/ is the project's own documentation, held to the code it describes.

- docs/api.md §1 and the served OpenAPI document (``GET /v1/openapi.json``) name the same routes, and
  each route the same statuses;
- docs/operations.md has a runbook entry for every alarm of the synthesized stack;
- every ``docs/<page>.md §n`` that the code, the tests or the README cite is a section of that page, and
  nothing points outside the repository.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from infra.constants import APP_NAME, DEFAULT_STAGE
from tests.support import api_fixtures
from tests.support.api_fixtures import OPENAPI, Api

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
# docs/api.md §1: statuses every route may answer (API Gateway's own), besides those in its row.
EVERY_ROUTE = {401, 403}
_ROUTE_ROW = re.compile(r"^\| `(GET|PUT|POST|DELETE|PATCH) (/v1/[^ `?]+)[^`]*` \|.*\| ([\d ·]+) \|$")
_CITATION = re.compile(r"docs/(\w+)\.md`? §(\d+)")

api = api_fixtures.api
simulator = api_fixtures.simulator


def section(page: str, number: int) -> str:
    """The text of ``## <number>.`` of docs/<page>.md, up to the next ``## `` heading."""
    text = (DOCS / f"{page}.md").read_text(encoding="utf-8")
    found = re.search(rf"^## {number}\. .*?(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert found, f"docs/{page}.md has no section {number}"
    return found.group(0)


def documented_routes() -> dict[tuple[str, str], set[int]]:
    """docs/api.md §1's route tables: (method, path) → every status the route may answer."""
    routes: dict[tuple[str, str], set[int]] = {}
    for line in section("api", 1).splitlines():
        row = _ROUTE_ROW.match(line)
        if row:
            method, path, statuses = row.groups()
            routes[(method, path)] = {int(s) for s in statuses.split("·")} | EVERY_ROUTE
    return routes


def served_routes(document: dict[str, Any]) -> dict[tuple[str, str], set[int]]:
    return {
        (method.upper(), path): {int(status) for status in operation["responses"]}
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if method in HTTP_METHODS
    }


def test_api_md_parses_into_every_route_of_the_stack() -> None:
    from infra.api import COMPANION_ROUTES

    documented = set(documented_routes())
    assert documented == set(COMPANION_ROUTES) | {("POST", "/v1/devices/{serial}/usage")}


def test_the_served_openapi_document_and_api_md_name_the_same_routes_and_statuses(api: Api) -> None:
    answer = api.request("GET", OPENAPI)
    assert answer.status == 200
    served = served_routes(answer.body)
    documented = documented_routes()
    expected = documented
    assert set(served) == set(expected)
    differences = {
        f"{method} {path}": {
            "served only": sorted(served[key] - expected[key]),
            "docs only": sorted(expected[key] - served[key]),
        }
        for key in served
        for method, path in [key]
        if served[key] != expected[key]
    }
    assert differences == {}


def test_every_error_answer_in_the_served_document_has_the_error_shape(api: Api) -> None:
    document = api.request("GET", OPENAPI).body
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    # 401 comes from API Gateway itself, before any function: {"message": ...}; 403, 404 and 413 from
    # either API Gateway or a function.
    gateway_ref = {"$ref": "#/components/schemas/GatewayMessage"}
    either = {"oneOf": [error_ref, gateway_ref]}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    expected = {401: gateway_ref, 403: either, 404: either, 413: either}.get(
                        int(status), error_ref
                    )
                    assert schema == expected, (method, path, status)
    assert set(document["components"]["schemas"]["ErrorResponse"]["properties"]) == {"error"}


@pytest.fixture(scope="module")
def stack_template() -> dict[str, Any]:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from aws_cdk.assertions import Template

    from infra.app_factory import build_app

    app = build_app(context={"aws:cdk:bundling-stacks": []}, nag=False)
    return Template.from_stack(app.node.find_child(f"{APP_NAME}-{DEFAULT_STAGE}")).to_json()


def test_every_alarm_of_the_stack_has_a_runbook_entry(stack_template: dict[str, Any]) -> None:
    alarm_names = [
        resource["Properties"]["AlarmName"]
        for resource in stack_template["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    ]
    assert len(alarm_names) >= 14
    runbook = (DOCS / "operations.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^### `<stack>-(\w+)`", runbook, flags=re.MULTILINE))
    suffixes = {name.split("-", 2)[-1] for name in alarm_names}
    assert suffixes == headings


def _cited_files() -> list[Path]:
    files = [ROOT / "README.md", *DOCS.glob("*.md")]
    for folder in ("infra", "functions", "layers/core", "sandbox", "tests", "bench", "webapp"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".js", ".md"}]
    return files


def test_every_docs_citation_names_an_existing_section() -> None:
    cited = {
        (page, int(number), path.relative_to(ROOT).as_posix())
        for path in _cited_files()
        for page, number in _CITATION.findall(path.read_text(encoding="utf-8"))
    }
    assert len(cited) > 20
    for page, number, where in sorted(cited):
        assert (DOCS / f"{page}.md").is_file(), f"{where} cites docs/{page}.md"
        section(page, number)


# A path outside the repository (spelt in two parts, so this file does not name it itself)
OUTSIDE = "../" + "shared"


@pytest.mark.parametrize("phrase", [OUTSIDE, "issue note", "design input", "shared/design"])
def test_docs_and_readme_speak_for_the_project_and_point_inside_it(phrase: str) -> None:
    for path in [ROOT / "README.md", *DOCS.glob("*.md")]:
        assert phrase not in path.read_text(encoding="utf-8").lower(), f"{path.name} mentions {phrase!r}"
