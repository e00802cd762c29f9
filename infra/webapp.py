"""The companion web app, deployed (optional, context ``webApp=true``): ``webapp/`` in a private S3
bucket, served by CloudFront through origin access control (docs/architecture.md §8).

The bucket is never public: only this distribution may read it (OAC, SigV4-signed requests). Viewers
get HTTPS only, the app's security headers (its CSP allows fetch() to the API and to LWA's token
endpoint, nothing else) and the files of the last deployment (each deployment invalidates the cache).
``config.json`` is written at deployment: the API's URL, the LWA client id, Amazon's sign-in page and
token endpoint, and the device models the app offers (context ``webAppDeviceModels``).

The API must accept the app's origin in CORS: ``WebApp.origin`` is that origin (``https://<domain>``),
for the API's allowed origins. Login with Amazon must know it too (security profile → Allowed Origins
and Allowed Return URLs: ``WebApp.url``).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3_deployment
from constructs import Construct

from infra.app_factory import ROOT
from infra.constants import WEBAPP_CSP
from infra.nag import acknowledge, arn_token

WEBAPP_DIR = ROOT / "webapp"
LWA_AUTHORIZE_URL = "https://www.amazon.com/ap/oa"
LWA_TOKEN_URL = "https://api.amazon.com/auth/o2/token"  # noqa: S105 - a URL, not a secret
# The app re-reads its devices this often; readings and Amazon's notifications move them meanwhile.
REFRESH_SECONDS = 30
LOG_RETENTION = Duration.days(90)
BASIC_EXECUTION_ROLE = "arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


def web_app_enabled(scope: Construct) -> bool:
    """Context ``webApp``: ``true`` deploys the web app; anything else (the default) leaves it out."""
    value = scope.node.try_get_context("webApp")
    return value is True or str(value).lower() == "true"


def _lint_exempt(resource: Any, check: str, reason: str) -> None:
    """Tell cfn-lint to skip ``check`` on one resource; ``reason`` says why, as every exemption must."""
    if len(reason) < 20:
        raise ValueError("an exemption needs a real reason")
    config = resource.get_metadata("cfn-lint") or {"config": {"ignore_checks": []}}
    config["config"]["ignore_checks"].append(check)
    resource.add_metadata("cfn-lint", config)
    resource.add_metadata(
        "cfn-lint-reasons", {**(resource.get_metadata("cfn-lint-reasons") or {}), check: reason}
    )


class WebApp(Construct):
    """Private bucket + CloudFront (OAC) for ``webapp/``; ``publish`` uploads it with its config."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        # Development stages delete everything, the buckets' files too; prod keeps them.
        private = {
            "encryption": s3.BucketEncryption.S3_MANAGED,
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "enforce_ssl": True,
            "removal_policy": removal_policy,
            "auto_delete_objects": removal_policy == RemovalPolicy.DESTROY,
        }
        self.logs = s3.Bucket(
            self,
            "Logs",
            # CloudFront's standard logs are delivered with an ACL grant: the bucket must allow ACLs.
            object_ownership=s3.ObjectOwnership.OBJECT_WRITER,
            lifecycle_rules=[s3.LifecycleRule(expiration=LOG_RETENTION)],
            **private,
        )
        acknowledge(
            self.logs,
            "AwsSolutions-S1",
            "This is the access-log bucket of the web app's bucket and distribution; logging it to "
            "itself would loop.",
        )
        self.bucket = s3.Bucket(
            self, "Files", server_access_logs_bucket=self.logs, server_access_logs_prefix="s3/", **private
        )
        self._headers = cloudfront.ResponseHeadersPolicy(
            self,
            "SecurityHeaders",
            comment="The companion web app's security headers",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(365), include_subdomains=True, override=True
                ),
            ),
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="Companion web app",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=self._headers,
            ),
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            enable_logging=True,
            log_bucket=self.logs,
            log_file_prefix="cloudfront/",
        )
        # CloudFront, its origin access control and response headers policies exist in the commercial
        # AWS partition only: the web app is not offered in China or GovCloud regions.
        for resource in (self.distribution, self._headers):
            _lint_exempt(resource.node.default_child, "E3006", "CloudFront is not in cn-* or us-gov-*")
        for node in self.node.find_all():
            if isinstance(node, cloudfront.CfnOriginAccessControl):
                _lint_exempt(node, "E3006", "CloudFront is not in cn-* or us-gov-*")
        _lint_exempt(
            self.logs.node.default_child,
            "W3045",
            "CloudFront's standard logs are delivered through the log-delivery ACL this bucket grants",
        )
        auto_delete = Stack.of(self).node.try_find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
        if auto_delete is not None:
            _lint_exempt(
                auto_delete.node.find_child("Handler"),
                "W3005",
                "the CDK writes a DependsOn on the auto-delete provider's role that its GetAtt implies",
            )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR1",
            "A companion app is used wherever the maker's customers are; Amazon's own sign-in decides "
            "who may link a device, so there is no country to block.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR2",
            "Static files only, from a private bucket; every request that matters goes to the API, "
            "which its authorizers guard. Attach a WAF web ACL here if the maker's policy asks for one.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR4",
            "The distribution uses CloudFront's default certificate (*.cloudfront.net), whose TLS "
            "policy CloudFront sets; a custom domain with its own certificate gets TLSv1.2_2021.",
        )

    @property
    def url(self) -> str:
        """``https://<distribution domain>/``: the app, and its LWA redirect URI."""
        return f"https://{self.distribution.distribution_domain_name}/"

    @property
    def origin(self) -> str:
        """``https://<distribution domain>``: the origin the API's CORS configuration must allow."""
        return f"https://{self.distribution.distribution_domain_name}"

    def publish(self, *, api_url: str, lwa_client_id: str, device_models: list[dict[str, str]]) -> None:
        """Upload ``webapp/`` and its ``config.json``; each deployment invalidates CloudFront's cache."""
        config: dict[str, Any] = {
            "apiBaseUrl": api_url,
            "lwa": {
                "clientId": lwa_client_id,
                "authorizeUrl": LWA_AUTHORIZE_URL,
                "tokenUrl": LWA_TOKEN_URL,
            },
            "deviceModels": device_models,
            "refreshSeconds": REFRESH_SECONDS,
        }
        # The CSP allows the region's API Gateway endpoints rather than the API's own domain: the API's
        # CORS names this distribution, so naming the API here would make a dependency cycle
        # (distribution -> headers policy -> API -> distribution) that CloudFormation refuses.
        api_origin = f"https://*.execute-api.{Aws.REGION}.amazonaws.com"
        token_origin = "https://" + LWA_TOKEN_URL.split("/")[2]
        headers = self._headers.node.default_child
        headers.add_property_override(  # type: ignore[union-attr]
            "ResponseHeadersPolicyConfig.SecurityHeadersConfig.ContentSecurityPolicy",
            {
                "ContentSecurityPolicy": WEBAPP_CSP.format(connect=f"{api_origin} {token_origin}"),
                "Override": True,
            },
        )
        deployment = s3_deployment.BucketDeployment(
            self,
            "Deploy",
            sources=[
                s3_deployment.Source.asset(str(WEBAPP_DIR)),
                s3_deployment.Source.json_data("config.json", config),
            ],
            destination_bucket=self.bucket,
            distribution=self.distribution,
            distribution_paths=["/*"],
            memory_limit=256,
        )
        self._acknowledge_deployment_handler(deployment)

    def _acknowledge_deployment_handler(self, deployment: s3_deployment.BucketDeployment) -> None:
        """The CDK's upload function (one per stack, beside this construct): its findings, with why."""
        stack = Stack.of(self)
        handlers = [
            child for child in stack.node.children if child.node.id.startswith("Custom::CDKBucketDeployment")
        ]
        bucket_objects = f"{arn_token(self.bucket)}/*"
        asset_objects = "arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*"
        wildcards = {
            "Action::s3:GetObject*": "reads the CDK asset (the zipped webapp/) and the bucket's objects",
            "Action::s3:GetBucket*": "reads the two buckets' locations to copy between them",
            "Action::s3:List*": "lists the web app bucket to delete files no longer in webapp/",
            "Action::s3:DeleteObject*": "deletes files of the previous deployment",
            "Action::s3:Abort*": "aborts its own multipart uploads",
            f"Resource::{asset_objects}": "the CDK asset bucket's object holding webapp/ (its key varies)",
            f"Resource::{bucket_objects}": "every file of the web app bucket (their names come from webapp/)",
            "Resource::*": "CloudFront's CreateInvalidation has no resource-level permissions",
        }
        for handler in handlers:
            acknowledge(
                handler,
                f"AwsSolutions-IAM4[Policy::{BASIC_EXECUTION_ROLE}]",
                "The CDK's BucketDeployment upload function logs with AWSLambdaBasicExecutionRole; it "
                "runs only while CloudFormation deploys the web app.",
            )
            acknowledge(
                handler,
                "AwsSolutions-L1",
                "The BucketDeployment function's runtime is the one this aws-cdk-lib version ships; "
                "upgrading aws-cdk-lib moves it.",
            )
            for finding, why in wildcards.items():
                acknowledge(
                    handler,
                    f"AwsSolutions-IAM5[{finding}]",
                    f"The CDK's BucketDeployment upload function {why}; it runs only during deployments.",
                )
        for handler in handlers:
            _lint_exempt(
                handler.node.default_child or handler,
                "W3005",
                "the CDK writes a DependsOn on the upload function's role that its GetAtt already implies",
            )
