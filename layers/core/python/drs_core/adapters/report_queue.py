"""The SQS queue of report jobs: sends message bodies ten at a time (SendMessageBatch's maximum)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from drs_core.observability import logger

BATCH_SIZE = 10  # SendMessageBatch takes at most ten entries
# Entries SQS refuses inside a 200 answer (throttling, internal errors) are sent again this many times.
MAX_SEND_ATTEMPTS = 3


class ReportQueueError(RuntimeError):
    """Some jobs could not be enqueued after retries (the planner run fails and is retried)."""


class ReportQueue:
    """Sends report jobs; the boto3 client is built on first use (cheap imports, injectable)."""

    def __init__(self, queue_url: str, *, sqs: Any = None) -> None:
        self._queue_url = queue_url
        self._client = sqs

    @property
    def _sqs(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def send_all(self, bodies: Iterable[str]) -> int:
        """Send every body, in batches of ten, without holding more than one batch; return the count."""
        sent = 0
        for batch in _chunks(bodies, BATCH_SIZE):
            self._send_batch(batch)
            sent += len(batch)
        return sent

    def _send_batch(self, bodies: list[str]) -> None:
        pending = {str(index): body for index, body in enumerate(bodies)}
        for _ in range(MAX_SEND_ATTEMPTS):
            answer = self._sqs.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": entry_id, "MessageBody": body} for entry_id, body in pending.items()],
            )
            failed = answer.get("Failed") or []
            # A sender fault (malformed entry) will not heal on a retry: stop at once.
            if any(entry.get("SenderFault") for entry in failed):
                break
            pending = {entry["Id"]: pending[entry["Id"]] for entry in failed}
            if not pending:
                return
        codes = sorted({entry.get("Code", "?") for entry in failed})
        logger.error("report jobs not enqueued", extra={"failed": len(failed), "codes": codes})
        raise ReportQueueError(f"{len(failed)} report job(s) not enqueued: {', '.join(codes)}")


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
