"""Template assertions for the HTTP API construct: routes and their authorizers, caching, throttling,
access logs, least-privilege roles. Properties, not counts.

The app is synthesized once per module. The device authorizer only enters a template with a device
route (issue 4 adds the usage route), so a small second stack adds one, with a context override of
the authorizer cache period (and of the linking settings).
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from drs_core import schema
from infra.api import COMPANION_ROUTES, OPENAPI_PATH, REGISTRATION_PATH, Api
from infra.app_factory import build_app
from infra.constants import (
    API_BURST_LIMIT,
    API_RATE_LIMIT,
    REGISTRATION_BURST_LIMIT,
    REGISTRATION_RATE_LIMIT,
)
from infra.data import Data
from infra.functions import SharedLayers

SECRET_NAME = "drs/lwa-client-secret"


@pytest.fixture(scope="module")
def template() -> Template:
    app = build_app(context={"aws:cdk:bundling-stacks": []})
    return Template.from_stack(app.node.find_child("DrsReplenishment-dev"))


@pytest.fixture(scope="module")
def device_route_template() -> Template:
    app = cdk.App(
        context={
            "aws:cdk:bundling-stacks": [],
            "authorizerCacheSeconds": 60,
            "requirePairingCode": False,
            "settingsExitSchemes": "myapp,myapp-beta",
        }
    )
    stack = cdk.Stack(app, "ApiOnly")
    api = Api(
        stack,
        "Api",
        data=Data(stack, "Data", removal_policy=cdk.RemovalPolicy.DESTROY),
        layers=SharedLayers(stack, "Layers"),
        lwa_client_id="amzn1.application-oa2-client.test",
        lwa_client_secret_name=SECRET_NAME,
    )
    api.add_device_route("POST", "/v1/devices/{serial}/usage", api.companion_api_function.function)
    return Template.from_stack(stack)


def resources(template: Template, kind: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    return template.find_resources(kind, {"Properties": props} if props else None)


def only_id(found: dict[str, Any]) -> str:
    (logical_id,) = found.keys()
    return logical_id


def authorizer_id(template: Template, name: str) -> str:
    return only_id(resources(template, "AWS::ApiGatewayV2::Authorizer", {"Name": name}))


def policy_statements(template: Template, name: str) -> list[dict[str, Any]]:
    """The statements of the inline policy attached to the function's own role."""
    functions = resources(
        template,
        "AWS::Lambda::Function",
        {"Environment": {"Variables": Match.object_like({"POWERTOOLS_SERVICE_NAME": name})}},
    )
    role_ref = next(iter(functions.values()))["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = [
        policy
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_ref} in policy["Properties"]["Roles"]
    ]
    return [
        statement for policy in policies for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions_of(statements: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        actions = statement["Action"]
        found.update([actions] if isinstance(actions, str) else actions)
    return found


def test_http_api_with_companion_authorizer_cached_for_five_minutes(template: Template) -> None:
    template.has_resource_properties("AWS::ApiGatewayV2::Api", {"ProtocolType": "HTTP"})
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Authorizer",
        {
            "Name": "companion",
            "AuthorizerType": "REQUEST",
            "AuthorizerPayloadFormatVersion": "2.0",
            "EnableSimpleResponses": True,
            "IdentitySource": ["$request.header.Authorization"],
            "AuthorizerResultTtlInSeconds": 300,
        },
    )


def test_every_companion_route_is_behind_the_companion_authorizer(template: Template) -> None:
    companion = authorizer_id(template, "companion")
    for method, path in COMPANION_ROUTES:
        template.has_resource_properties(
            "AWS::ApiGatewayV2::Route",
            {
                "RouteKey": f"{method} {path}",
                "AuthorizationType": "CUSTOM",
                "AuthorizerId": {"Ref": companion},
            },
        )
    # The OpenAPI document alone is public.
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Route", {"RouteKey": f"GET {OPENAPI_PATH}", "AuthorizationType": "NONE"}
    )
    assert set(resources(template, "AWS::ApiGatewayV2::Route", {"AuthorizationType": "NONE"})) == set(
        resources(template, "AWS::ApiGatewayV2::Route", {"RouteKey": f"GET {OPENAPI_PATH}"})
    )


def test_integrations_use_payload_v2(template: Template) -> None:
    for integration in resources(template, "AWS::ApiGatewayV2::Integration").values():
        assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"
        assert integration["Properties"]["PayloadFormatVersion"] == "2.0"


def test_stage_throttles_every_route_and_linking_harder(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AutoDeploy": True,
            "DefaultRouteSettings": {
                "ThrottlingRateLimit": API_RATE_LIMIT,
                "ThrottlingBurstLimit": API_BURST_LIMIT,
            },
            "RouteSettings": {
                f"POST {REGISTRATION_PATH}": {
                    "ThrottlingRateLimit": REGISTRATION_RATE_LIMIT,
                    "ThrottlingBurstLimit": REGISTRATION_BURST_LIMIT,
                }
            },
        },
    )


def test_access_logs_are_json_without_headers_or_query_into_a_retained_log_group(template: Template) -> None:
    (stage,) = resources(template, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["AccessLogSettings"]
    log_group = settings["DestinationArn"]["Fn::GetAtt"][0]
    assert resources(template, "AWS::Logs::LogGroup")[log_group]["Properties"]["RetentionInDays"] == 30
    fields = json.loads(settings["Format"])
    assert fields["requestId"] == "$context.requestId" and fields["status"] == "$context.status"
    # Headers and the query string may carry tokens (the settings link's answer does not, but be sure).
    assert not any("header" in value or "querystring" in value.lower() for value in fields.values())


def test_companion_api_role_is_least_privilege(template: Template) -> None:
    statements = policy_statements(template, "companion_api")
    assert actions_of(statements) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "kms:Encrypt",
        "kms:Decrypt",
        "secretsmanager:GetSecretValue",
    }
    secret = next(s for s in statements if s["Action"] == "secretsmanager:GetSecretValue")
    assert json.dumps(secret["Resource"]).endswith(f':secret:{SECRET_NAME}-??????"]]}}')
    owner_index = next(
        s for s in statements if s["Action"] == "dynamodb:Query" and "/index/" in json.dumps(s["Resource"])
    )
    assert f"/index/{schema.OWNER_INDEX}" in json.dumps(owner_index["Resource"])
    # DeleteItem only on the tokens table (unlinking destroys tokens; state items are never deleted)
    delete = next(s for s in statements if "dynamodb:DeleteItem" in s["Action"])
    assert "Tokens" in json.dumps(delete["Resource"])


def test_companion_authorizer_needs_no_table_key_or_secret(template: Template) -> None:
    assert actions_of(policy_statements(template, "companion_authorizer")) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like(
                    {"POWERTOOLS_SERVICE_NAME": "companion_authorizer", "LWA_CLIENT_ID": Match.any_value()}
                )
            }
        },
    )


def test_no_secret_is_created_by_the_template(template: Template) -> None:
    assert resources(template, "AWS::SecretsManager::Secret") == {}
    for function in resources(template, "AWS::Lambda::Function").values():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        assert not any("SECRET" in name and name != "LWA_CLIENT_SECRET_NAME" for name in variables)


def test_device_authorizer_is_bound_to_the_path_and_reads_one_item(device_route_template: Template) -> None:
    template = device_route_template
    device = authorizer_id(template, "device")
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Authorizer",
        {
            "Name": "device",
            "EnableSimpleResponses": True,
            # The path is part of the cache key: serial A's cached allow never serves serial B.
            "IdentitySource": ["$request.header.Authorization", "$context.path"],
            "AuthorizerResultTtlInSeconds": 60,
        },
    )
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Route",
        {
            "RouteKey": "POST /v1/devices/{serial}/usage",
            "AuthorizationType": "CUSTOM",
            "AuthorizerId": {"Ref": device},
        },
    )
    statements = policy_statements(template, "device_authorizer")
    assert actions_of(statements) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:GetItem",
        "kms:Decrypt",
    }


def test_device_routes_must_carry_the_serial() -> None:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stack = cdk.Stack(app, "Bare")
    api = Api(
        stack,
        "Api",
        data=Data(stack, "Data", removal_policy=cdk.RemovalPolicy.DESTROY),
        layers=SharedLayers(stack, "Layers"),
        lwa_client_id="amzn1.application-oa2-client.test",
        lwa_client_secret_name=SECRET_NAME,
    )
    with pytest.raises(ValueError, match="serial"):
        api.add_device_route("POST", "/v1/usage", api.companion_api_function.function)


def _companion_environment(template: Template) -> dict[str, Any]:
    functions = resources(
        template,
        "AWS::Lambda::Function",
        {"Environment": {"Variables": Match.object_like({"POWERTOOLS_SERVICE_NAME": "companion_api"})}},
    )
    (function,) = functions.values()
    return function["Properties"]["Environment"]["Variables"]


def test_linking_requires_the_pairing_code_unless_the_stage_says_otherwise(
    template: Template, device_route_template: Template
) -> None:
    # By default: pairing codes required, the settings page returns to https only
    default = _companion_environment(template)
    assert default["REQUIRE_PAIRING_CODE"] == "true" and "SETTINGS_EXIT_SCHEMES" not in default
    # A stage with context requirePairingCode=false and its app's schemes
    configured = _companion_environment(device_route_template)
    assert configured["REQUIRE_PAIRING_CODE"] == "false"
    assert configured["SETTINGS_EXIT_SCHEMES"] == "myapp,myapp-beta"
