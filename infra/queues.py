"""Queue shapes shared by the concerns."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.nag import acknowledge

# The longest SQS keeps a message: time to notice the alarm, fix the cause and redrive.
DEAD_LETTER_RETENTION = Duration.days(14)


def failure_destination_queue(
    scope: Construct, construct_id: str, *, senders: str, removal_policy: RemovalPolicy
) -> sqs.Queue:
    """A dead-letter queue that AWS services send failure records to (an on-failure destination, a
    schedule's dead-letter target), not a redrive target of another queue.

    The records hold positions and inputs, never customer data: SQS-managed encryption suffices and
    keeps the senders' roles free of the wildcard KMS actions a customer-managed key would need.
    ``senders`` says who sends what here, for cdk-nag's acknowledgement.
    """
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=DEAD_LETTER_RETENTION,
        removal_policy=removal_policy,
    )
    acknowledge(
        queue,
        "AwsSolutions-SQS3",
        f"This queue is itself a dead-letter destination: {senders}, which cdk-nag does not recognise.",
    )
    return queue
