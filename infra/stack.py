"""The deployable stack: it only composes the constructs of ``infra/``."""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from constructs import Construct

from infra.data import Data


class ReplenishmentStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, stage: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # Production data outlives a stack deletion; development stages clean up after themselves.
        removal = RemovalPolicy.RETAIN if stage == "prod" else RemovalPolicy.DESTROY
        self.data = Data(self, "Data", removal_policy=removal)
        CfnOutput(self, "StateTableName", value=self.data.state_table.table_name)
