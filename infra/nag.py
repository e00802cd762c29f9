"""cdk-nag acknowledgements with their written reasons: the only way this project suppresses a rule."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import Construct


def acknowledge(construct: Construct, finding: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (``AwsSolutions-IAM5[Resource::…]``) on ``construct``, with why."""
    if len(reason) < 20:
        raise ValueError("a suppression needs a real reason")
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason))


def arn_token(construct: Construct) -> str:
    """How cdk-nag spells ``construct``'s ARN inside a finding id: ``<LogicalId.Arn>``."""
    resource = construct.node.default_child
    return f"<{Stack.of(construct).get_logical_id(resource)}.Arn>"  # type: ignore[arg-type]
