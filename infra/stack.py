"""The deployable stack: it only composes the constructs of ``infra/``."""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from constructs import Construct

from infra.data import Data
from infra.functions import SharedLayers


class ReplenishmentStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, stage: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # Production data outlives a stack deletion; development stages clean up after themselves.
        removal = RemovalPolicy.RETAIN if stage == "prod" else RemovalPolicy.DESTROY
        self.data = Data(self, "Data", removal_policy=removal)
        self.layers = SharedLayers(self, "Layers")
        # Login with Amazon: the security profile's client id, and the Secrets Manager secret (created
        # by the operator, never by this template) that holds its client secret.
        self.lwa_client_id = (
            self.node.try_get_context("lwaClientId") or "amzn1.application-oa2-client.CHANGE_ME"
        )
        self.lwa_client_secret_name = (
            self.node.try_get_context("lwaClientSecretName") or "drs/lwa-client-secret"
        )
        CfnOutput(self, "StateTableName", value=self.data.state_table.table_name)
