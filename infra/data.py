"""Data: the customer-managed KMS key, the state table, the tokens table and the idempotency table.

Key layout and index names come from ``drs_core.schema``, the same constants the runtime uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from drs_core import schema

if TYPE_CHECKING:
    from infra.functions import ReplenishmentFunction


class Data(Construct):
    """Tables (on-demand, PITR, encrypted with one rotating customer-managed key) and that key."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        # CDK's default key policy lets this account's IAM decide (root: kms:* on "*", which in a key
        # policy means this key only); without it the key could lock its own account out.
        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts device state, DRS tokens, queues and topics",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.state_table = self._build_state_table(removal_policy)
        # The TTL removes a half-done linking's held tokens that no retry came back for.
        self.tokens_table = self._build_table(
            "Tokens", schema.TOKENS_PK, removal_policy, ttl=schema.TOKENS_TTL_ATTR
        )
        self.idempotency_table = self._build_table(
            "Idempotency", schema.IDEMPOTENCY_PK, removal_policy, ttl=schema.IDEMPOTENCY_TTL_ATTR
        )

    def _table_props(self, removal_policy: RemovalPolicy) -> dict:
        return {
            "billing_mode": dynamodb.BillingMode.PAY_PER_REQUEST,
            "encryption": dynamodb.TableEncryption.CUSTOMER_MANAGED,
            "encryption_key": self.key,
            "point_in_time_recovery_specification": dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            "removal_policy": removal_policy,
        }

    def _build_state_table(self, removal_policy: RemovalPolicy) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            "State",
            partition_key=dynamodb.Attribute(name=schema.STATE_PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=schema.STATE_SK, type=dynamodb.AttributeType.STRING),
            stream=dynamodb.StreamViewType(schema.STATE_STREAM_VIEW_TYPE),
            **self._table_props(removal_policy),
        )
        table.add_global_secondary_index(
            index_name=schema.OWNER_INDEX,
            partition_key=dynamodb.Attribute(name=schema.OWNER_INDEX_PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=schema.OWNER_INDEX_SK, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType(schema.OWNER_INDEX_PROJECTION),
        )
        table.add_global_secondary_index(
            index_name=schema.REPORT_INDEX,
            partition_key=dynamodb.Attribute(name=schema.REPORT_INDEX_PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=schema.REPORT_INDEX_SK, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType(schema.REPORT_INDEX_PROJECTION),
            non_key_attributes=list(schema.REPORT_INDEX_ATTRS),
        )
        return table

    def _build_table(
        self, construct_id: str, partition_key: str, removal_policy: RemovalPolicy, *, ttl: str | None = None
    ) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            construct_id,
            partition_key=dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
            time_to_live_attribute=ttl,
            **self._table_props(removal_policy),
        )

    def grant_idempotency(self, role: iam.Role) -> None:
        """Let ``role`` keep Powertools idempotency records: read, create or overwrite, update, and delete
        the record of a failed attempt (the table's key grants are the caller's own)."""
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                ],
                resources=[self.idempotency_table.table_arn],
            )
        )

    def grant_token_refresh(self, function: ReplenishmentFunction, lwa_client_secret_name: str) -> None:
        """Let ``function``'s token vault read a device's tokens and store refreshed ones: the tokens
        table, the key that wraps them, and the LWA client secret that a refresh presents."""
        function.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"], resources=[self.tokens_table.table_arn]
            )
        )
        function.role.add_to_policy(
            iam.PolicyStatement(actions=["kms:Encrypt", "kms:Decrypt"], resources=[self.key.key_arn])
        )
        function.grant_lwa_client_secret(lwa_client_secret_name)

    def token_environment(
        self, lwa_client_id: str, lwa_client_secret_name: str | None = None
    ) -> dict[str, str]:
        """Settings of a function that uses the token vault (one place, so the functions agree)."""
        environment = {
            "STATE_TABLE": self.state_table.table_name,
            "TOKENS_TABLE": self.tokens_table.table_name,
            "TOKENS_KMS_KEY_ID": self.key.key_arn,
            "LWA_CLIENT_ID": lwa_client_id,
        }
        if lwa_client_secret_name is not None:
            environment["LWA_CLIENT_SECRET_NAME"] = lwa_client_secret_name
        return environment
