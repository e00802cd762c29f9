"""The optional web app distribution (infra/webapp.py): off by default; with ``webApp=true`` a private
bucket served by CloudFront through origin access control, cdk-nag and cfn-lint clean."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template
from cfnlint.api import lint_all

from infra.app_factory import build_app

STACK_ID = "DrsReplenishment-dev"


def _template(context: dict[str, Any]) -> dict[str, Any]:
    # cdk-nag runs at synthesis: an unacknowledged finding raises here.
    app = build_app(context={"aws:cdk:bundling-stacks": [], **context})
    return Template.from_stack(app.node.find_child(STACK_ID)).to_json()


@pytest.fixture(scope="module")
def with_web_app() -> dict[str, Any]:
    return _template({"webApp": "true", "lwaClientId": "amzn1.application-oa2-client.webtest"})


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == kind}


def test_the_web_app_is_off_by_default() -> None:
    template = _template({"webApp": "false"})
    assert of_type(template, "AWS::CloudFront::Distribution") == {}
    assert of_type(template, "AWS::S3::Bucket") == {}
    assert "WebAppUrl" not in template.get("Outputs", {})


def test_its_bucket_is_private_encrypted_tls_only_and_logged(with_web_app: dict[str, Any]) -> None:
    buckets = of_type(with_web_app, "AWS::S3::Bucket")
    files = next(props for name, props in buckets.items() if name.startswith("WebAppFiles"))
    assert files["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert files["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "AES256"}
    assert files["LoggingConfiguration"]["LogFilePrefix"] == "s3/"
    policies = of_type(with_web_app, "AWS::S3::BucketPolicy")
    files_policy = next(p for name, p in policies.items() if name.startswith("WebAppFiles"))
    statements = files_policy["PolicyDocument"]["Statement"]
    denies_plain_http = [
        s
        for s in statements
        if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert denies_plain_http
    readers = [s for s in statements if s["Effect"] == "Allow" and s["Action"] == "s3:GetObject"]
    # Only CloudFront, and only for this distribution (origin access control)
    assert [s["Principal"] for s in readers] == [{"Service": "cloudfront.amazonaws.com"}]
    source_arn = json.dumps(readers[0]["Condition"]["StringEquals"]["AWS:SourceArn"])
    assert "WebAppDistribution" in source_arn


def test_cloudfront_serves_it_over_https_through_origin_access_control(with_web_app: dict[str, Any]) -> None:
    (distribution,) = of_type(with_web_app, "AWS::CloudFront::Distribution").values()
    config = distribution["DistributionConfig"]
    (origin,) = config["Origins"]
    assert "OriginAccessControlId" in origin
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    (oac,) = of_type(with_web_app, "AWS::CloudFront::OriginAccessControl").values()
    assert oac["OriginAccessControlConfig"]["SigningBehavior"] == "always"
    assert oac["OriginAccessControlConfig"]["OriginAccessControlOriginType"] == "s3"
    assert config["DefaultRootObject"] == "index.html"
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert config["Logging"]["Prefix"] == "cloudfront/"
    assert "WebAppUrl" in with_web_app["Outputs"]


def test_its_csp_lets_the_app_call_only_the_api_and_lwas_token_endpoint(with_web_app: dict[str, Any]) -> None:
    (policy,) = of_type(with_web_app, "AWS::CloudFront::ResponseHeadersPolicy").values()
    headers = policy["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    csp = json.dumps(headers["ContentSecurityPolicy"]["ContentSecurityPolicy"])
    assert "connect-src 'self' https://" in csp
    # The region's API Gateway endpoints: the API's CORS names the distribution, so the CSP cannot name
    # the API's own domain without a dependency cycle
    assert "https://*.execute-api." in csp and "AWS::Region" in csp
    assert "https://api.amazon.com;" in csp
    assert "script-src 'self';" in csp
    assert headers["FrameOptions"]["FrameOption"] == "DENY"


def test_it_uploads_webapp_with_a_config_naming_the_api_and_the_lwa_client(
    with_web_app: dict[str, Any],
) -> None:
    (deployment,) = of_type(with_web_app, "Custom::CDKBucketDeployment").values()
    assert deployment["DistributionPaths"] == ["/*"]
    assert len(deployment["SourceObjectKeys"]) == 2  # webapp/ and config.json
    markers = json.dumps(deployment["SourceMarkers"])
    # config.json's tokens are filled in at deployment: the API's URL
    assert "ApiHttpApi" in markers


def test_the_template_with_the_web_app_is_cfn_lint_clean(with_web_app: dict[str, Any]) -> None:
    findings = [m for m in lint_all(json.dumps(with_web_app)) if m.rule.id[0] in "EW"]
    assert findings == []


def test_the_api_accepts_calls_from_the_web_apps_origin(with_web_app: dict[str, Any]) -> None:
    (distribution,) = of_type(with_web_app, "AWS::CloudFront::Distribution")
    (api,) = of_type(with_web_app, "AWS::ApiGatewayV2::Api").values()
    cors = api["CorsConfiguration"]
    # The distribution's own domain, resolved at deploy time, over https
    assert cors["AllowOrigins"] == [
        {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution, "DomainName"]}]]}
    ]
    assert {"authorization", "content-type"} <= {h.lower() for h in cors["AllowHeaders"]}
    assert {"GET", "PUT", "POST", "DELETE"} <= set(cors["AllowMethods"])
