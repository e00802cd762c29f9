"""The deployable stack: it only composes the constructs of ``infra/``."""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from constructs import Construct

from infra.alarms import AlarmTopic
from infra.api import Api, allowed_origins_from_context
from infra.constants import PLACEHOLDER_LWA_CLIENT_ID
from infra.data import Data
from infra.functions import SharedLayers
from infra.monitoring import Monitoring
from infra.notifications import Notifications
from infra.ordering import Ordering
from infra.reporting import Reporting
from infra.webapp import WebApp, web_app_enabled


class ReplenishmentStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, stage: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # Production data outlives a stack deletion; development stages clean up after themselves.
        removal = RemovalPolicy.RETAIN if stage == "prod" else RemovalPolicy.DESTROY
        self.data = Data(self, "Data", removal_policy=removal)
        self.layers = SharedLayers(self, "Layers")
        # Login with Amazon: the security profile's client id, and the Secrets Manager secret (created
        # by the operator, never by this template) that holds its client secret.
        self.lwa_client_id = self.node.try_get_context("lwaClientId") or PLACEHOLDER_LWA_CLIENT_ID
        if stage == "prod" and self.lwa_client_id == PLACEHOLDER_LWA_CLIENT_ID:
            # Every companion request would be denied (tokeninfo's audience never matches) and every
            # link refused: a deployment that looks healthy and serves no one.
            raise ValueError(
                "context lwaClientId is the placeholder: -c lwaClientId=amzn1.application-oa2-client.… "
                "(your LWA security profile's client id) is required for stage prod"
            )
        self.lwa_client_secret_name = (
            self.node.try_get_context("lwaClientSecretName") or "drs/lwa-client-secret"
        )
        # The companion web app (context webApp=true), built first: the API's CORS origins take
        # ``self.web_app.origin`` when it exists.
        self.web_app = WebApp(self, "WebApp", removal_policy=removal) if web_app_enabled(self) else None
        self.api = Api(
            self,
            "Api",
            data=self.data,
            layers=self.layers,
            lwa_client_id=self.lwa_client_id,
            lwa_client_secret_name=self.lwa_client_secret_name,
            # Browser apps' origins (context allowedOrigins); none by default.
            allowed_origins=allowed_origins_from_context(self),
            removal_policy=removal,
        )
        CfnOutput(self, "ApiUrl", value=self.api.url)
        if self.web_app is not None:
            # The app calls the API from its CloudFront origin.
            self.api.allow_origin(self.web_app.origin)
            self.web_app.publish(
                api_url=self.api.url,
                lwa_client_id=self.lwa_client_id,
                device_models=self.node.try_get_context("webAppDeviceModels") or [],
            )
            CfnOutput(self, "WebAppUrl", value=self.web_app.url)
        self.ordering = Ordering(
            self,
            "Ordering",
            data=self.data,
            layers=self.layers,
            api=self.api,
            lwa_client_id=self.lwa_client_id,
            lwa_client_secret_name=self.lwa_client_secret_name,
            removal_policy=removal,
        )
        self.reporting = Reporting(
            self,
            "Reporting",
            data=self.data,
            layers=self.layers,
            lwa_client_id=self.lwa_client_id,
            lwa_client_secret_name=self.lwa_client_secret_name,
            removal_policy=removal,
        )
        # Every alarm of the stack notifies this topic (subscribe the operators to it).
        self.alarms = AlarmTopic(self, "Alarms", key=self.data.key)
        self.alarm_topic = self.alarms.topic
        self.notifications = Notifications(
            self,
            "Notifications",
            data=self.data,
            layers=self.layers,
            lwa_client_id=self.lwa_client_id,
            alarm_action=self.alarms.action,
            removal_policy=removal,
        )
        # Paste into the DRS developer portal (device model → notifications): DRS publishes here.
        CfnOutput(self, "NotificationTopicArn", value=self.notifications.topic.topic_arn)
        CfnOutput(self, "StateTableName", value=self.data.state_table.table_name)
        # Dashboard and alarms over everything above; every alarm notifies the alarm topic.
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            api=self.api,
            ordering=self.ordering,
            notifications=self.notifications,
            reporting=self.reporting,
            alarm_action=self.alarms.action,
        )
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn)
