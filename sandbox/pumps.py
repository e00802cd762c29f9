"""Event pumps: what Lambda's event source mappings and EventBridge Scheduler do, stepped explicitly.

Each pump reads its configuration from the template (``EventSourceMappingSpec``, ``ScheduleSpec``) and
its source from moto. ``run_once()`` does one round and returns how much it handled (0: nothing to do);
``drain()`` repeats until a round handles nothing.

Where the sandbox compresses time: moto keeps SQS visibility timeouts on the wall clock, so a message
a function failed would reappear only after ``VisibilityTimeout`` real seconds. The SQS pump sets a
failed message's visibility to 0 instead (``ChangeMessageVisibility``): the next receive sees it again
at once, and moto applies the queue's ``maxReceiveCount`` on that receive, moving it to the DLQ as SQS
would. Retries are not delayed (no backoff) for the same reason.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from moto.events.models import EventPattern

from drs_core.clock import Clock, to_iso

from .aws import Resolver, Resources
from .functions import FunctionRunner, Invocation
from .template import EventSourceMappingSpec, ScheduleSpec, TemplateError

logger = logging.getLogger(__name__)

_SQS_RECEIVE_MAX = 10


@dataclass
class PumpStats:
    received: int = 0
    filtered_out: int = 0  # records a FilterCriteria dropped: the function never saw them
    invocations: int = 0
    failed_invocations: int = 0
    processed: int = 0  # records/messages done (deleted, or checkpointed past)
    retried: int = 0  # records/messages given back for another attempt
    discarded: int = 0  # stream records sent to the on-failure destination (or dropped without one)
    bisections: int = 0


class Pump:
    """What every pump offers."""

    name: str
    stats: PumpStats

    def run_once(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def drain(self, max_rounds: int = 1000) -> int:
        """Run rounds until one handles nothing; the total handled."""
        total = 0
        for _ in range(max_rounds):
            handled = self.run_once()
            if handled == 0:
                return total
            total += handled
        logger.warning("pump %s still busy after %d rounds", self.name, max_rounds)
        return total


def _patterns(mapping: EventSourceMappingSpec) -> list[EventPattern]:
    return [EventPattern.load(pattern) for pattern in mapping.filter_patterns]


def _passes(patterns: list[EventPattern], record: dict[str, Any]) -> bool:
    """Lambda's event filtering: no filters pass everything, else any one filter must match."""
    return not patterns or any(pattern.matches_event(record) for pattern in patterns)


def _failed_ids(outcome: Invocation, ids: list[str], report_failures: bool) -> list[str] | None:
    """Which items failed: ``None`` for the whole batch, else the reported identifiers (maybe none)."""
    if not outcome.ok:
        return None
    if not report_failures or not isinstance(outcome.result, dict):
        return []
    failures = outcome.result.get("batchItemFailures") or []
    reported = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
    # Lambda treats an empty, null or unknown identifier as a failure of the whole batch.
    if any(not item or item not in ids for item in reported):
        return None
    return [str(item) for item in reported]


# ------------------------------------------------------------------------------------------ SQS


class SqsPump(Pump):
    """An SQS event source mapping: receive, filter, invoke, delete what succeeded."""

    def __init__(self, mapping: EventSourceMappingSpec, runner: FunctionRunner, resources: Resources) -> None:
        self.mapping = mapping
        self.runner = runner
        self.queue = resources.queues[mapping.source]
        self.region = resources.region
        self.name = f"{runner.template.functions[mapping.function].name}<-sqs"
        self.stats = PumpStats()
        self._sqs = resources.client("sqs")
        self._patterns = _patterns(mapping)
        self._lock = threading.Lock()

    def run_once(self) -> int:
        with self._lock:
            messages = self._receive()
            if not messages:
                return 0
            self.stats.received += len(messages)
            records = [self._record(message) for message in messages]
            kept = [r for r in records if _passes(self._patterns, self._filterable(r))]
            dropped = [r for r in records if r not in kept]
            if dropped:
                # Lambda deletes messages its filter drops.
                self._delete(dropped)
                self.stats.filtered_out += len(dropped)
            if kept:
                self._invoke(kept)
            return len(messages)

    def _receive(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        while len(batch) < self.mapping.batch_size:
            answer = self._sqs.receive_message(
                QueueUrl=self.queue.url,
                MaxNumberOfMessages=min(_SQS_RECEIVE_MAX, self.mapping.batch_size - len(batch)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                VisibilityTimeout=self.queue.visibility_timeout,
            )
            received = answer.get("Messages", [])
            batch.extend(received)
            if len(received) < _SQS_RECEIVE_MAX:
                break
        return batch

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        """Lambda's SQS event record for one received message."""
        attributes: dict[str, Any] = {}
        for name, value in message.get("MessageAttributes", {}).items():
            shaped: dict[str, Any] = {
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            if "StringValue" in value:
                shaped["stringValue"] = value["StringValue"]
            if "BinaryValue" in value:
                shaped["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
            attributes[name] = shaped
        record = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": attributes,
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue.arn,
            "awsRegion": self.region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record

    @staticmethod
    def _filterable(record: dict[str, Any]) -> dict[str, Any]:
        """Lambda filters a JSON body as the parsed object, any other body as a plain string."""
        try:
            body = json.loads(record["body"])
        except ValueError:
            body = record["body"]
        return {**record, "body": body}

    def _invoke(self, records: list[dict[str, Any]]) -> None:
        outcome = self.runner.invoke(self.mapping.function, {"Records": records})
        self.stats.invocations += 1
        ids = [r["messageId"] for r in records]
        failed = _failed_ids(outcome, ids, self.mapping.report_batch_item_failures)
        failed_set = set(ids) if failed is None else set(failed)
        if failed is None:
            self.stats.failed_invocations += 1
        succeeded = [r for r in records if r["messageId"] not in failed_set]
        retry = [r for r in records if r["messageId"] in failed_set]
        self._delete(succeeded)
        self.stats.processed += len(succeeded)
        if retry:
            # Visible again now instead of after the visibility timeout (see the module docstring).
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.queue.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r["receiptHandle"], "VisibilityTimeout": 0}
                    for i, r in enumerate(retry)
                ],
            )
            self.stats.retried += len(retry)

    def _delete(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), _SQS_RECEIVE_MAX):
            chunk = records[start : start + _SQS_RECEIVE_MAX]
            self._sqs.delete_message_batch(
                QueueUrl=self.queue.url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )


# ------------------------------------------------------------------------------------------ DynamoDB streams


@dataclass
class _Record:
    event: dict[str, Any]
    shard_id: str
    seen_at: datetime  # simulated time the pump first read it (for MaximumRecordAgeInSeconds)


@dataclass
class _Batch:
    records: list[_Record]
    attempts: int = 0  # failed attempts so far (bisection does not count)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [record.event for record in self.records]


class StreamPump(Pump):
    """A DynamoDB stream event source mapping, in shard order, with Lambda's error handling."""

    def __init__(
        self,
        mapping: EventSourceMappingSpec,
        runner: FunctionRunner,
        resources: Resources,
        clock: Clock,
    ) -> None:
        self.mapping = mapping
        self.runner = runner
        self.resources = resources
        self.clock = clock
        self.table = resources.tables[mapping.source]
        if not self.table.stream_arn:
            raise TemplateError(f"{mapping.logical_id}: table {self.table.name} has no stream")
        self.stream_arn: str = self.table.stream_arn
        self.name = f"{runner.template.functions[mapping.function].name}<-stream"
        self.stats = PumpStats()
        self.on_failure_records: list[dict[str, Any]] = []
        self._streams = resources.client("dynamodbstreams")
        self._patterns = _patterns(mapping)
        self._pending: deque[_Record] = deque()
        self._work: deque[_Batch] = deque()
        self._iterators: dict[str, str | None] = {}
        self._last_sequence: dict[str, str] = {}
        self._lock = threading.Lock()
        self._open_iterators(mapping.starting_position or "LATEST")

    def _open_iterators(self, position: str) -> None:
        description = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in description["Shards"]:
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = self._streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType=position
                )["ShardIterator"]

    def run_once(self) -> int:
        with self._lock:
            fetched = self._poll()
            invoked = 0
            while True:
                if not self._work:
                    if not self._pending:
                        break
                    size = min(self.mapping.batch_size, len(self._pending))
                    self._work.append(_Batch([self._pending.popleft() for _ in range(size)]))
                batch = self._work[0]
                invoked += 1
                if not self._process(batch):
                    break  # retried on the next round, in order
            return fetched + invoked

    def _poll(self) -> int:
        fetched = 0
        now = self.clock.now()
        for shard_id, iterator in list(self._iterators.items()):
            if shard_id in self._last_sequence:
                # A fresh iterator after the last record read, every round: moto restores a deep copy of
                # the table (its stream shard included) when a TransactWriteItems is refused, and an
                # iterator taken before that keeps reading the shard it replaced, which grows no more.
                iterator = self._streams.get_shard_iterator(
                    StreamArn=self.stream_arn,
                    ShardId=shard_id,
                    ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                    SequenceNumber=self._last_sequence[shard_id],
                )["ShardIterator"]
            while iterator:
                answer = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                iterator = answer.get("NextShardIterator")
                records = answer.get("Records", [])
                for raw in records:
                    event = self._event(raw)
                    self.stats.received += 1
                    if _passes(self._patterns, event):
                        self._pending.append(_Record(event, shard_id, now))
                    else:
                        self.stats.filtered_out += 1
                fetched += len(records)
                if not records:
                    break
                self._last_sequence[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
            self._iterators[shard_id] = iterator
        return fetched

    def _event(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Lambda's DynamoDB stream event record (its times are epoch seconds)."""
        change = dict(raw["dynamodb"])
        created = change.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            change["ApproximateCreationDateTime"] = int(created.timestamp())
        return {
            "eventID": raw["eventID"],
            "eventName": raw["eventName"],
            "eventVersion": raw.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": raw.get("awsRegion", self.resources.region),
            "dynamodb": change,
            "eventSourceARN": self.stream_arn,
        }

    def _process(self, batch: _Batch) -> bool:
        """Invoke once; True when the batch is done with (succeeded or discarded)."""
        if self._too_old(batch):
            self._discard(batch, "RecordAgeExceeded", None)
            return True
        outcome = self.runner.invoke(self.mapping.function, {"Records": batch.events})
        self.stats.invocations += 1
        sequence = [event["dynamodb"]["SequenceNumber"] for event in batch.events]
        failed = _failed_ids(outcome, sequence, self.mapping.report_batch_item_failures)
        if failed == []:
            self._work.popleft()
            self.stats.processed += len(batch.records)
            return True
        self.stats.failed_invocations += 1
        if failed is not None:
            # Partial batch response: checkpoint before the lowest failed sequence number, retry from it.
            first = min(sequence.index(item) for item in failed)
            self.stats.processed += first
            batch.records = batch.records[first:]
        elif self.mapping.bisect_on_error and len(batch.records) > 1:
            # Split in two and retry each half; splitting does not consume the retry quota.
            half = len(batch.records) // 2
            self._work.popleft()
            self._work.extendleft(
                [_Batch(batch.records[half:], batch.attempts), _Batch(batch.records[:half], batch.attempts)]
            )
            self.stats.bisections += 1
            return False
        batch.attempts += 1
        limit = self.mapping.maximum_retry_attempts
        if limit >= 0 and batch.attempts > limit:
            self._discard(batch, "RetryAttemptsExhausted", outcome)
            return True
        self.stats.retried += len(batch.records)
        return False

    def _too_old(self, batch: _Batch) -> bool:
        limit = self.mapping.maximum_record_age_seconds
        if limit < 0:
            return False
        return self.clock.now() - batch.records[0].seen_at > timedelta(seconds=limit)

    def _discard(self, batch: _Batch, condition: str, outcome: Invocation | None) -> None:
        """Give up on a batch: send Lambda's failure record to the on-failure destination, move on."""
        self._work.popleft()
        self.stats.discarded += len(batch.records)
        first, last = batch.records[0].event, batch.records[-1].event
        function = self.resources.functions.get(self.mapping.function)
        record = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": function.arn if function else self.mapping.function,
                "condition": condition,
                "approximateInvokeCount": batch.attempts,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "version": "1.0",
            "timestamp": to_iso(self.clock.now()),
            "DDBStreamBatchInfo": {
                "shardId": batch.records[0].shard_id,
                "startSequenceNumber": first["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": last["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso_seconds(
                    first["dynamodb"].get("ApproximateCreationDateTime")
                ),
                "approximateArrivalOfLastRecord": _iso_seconds(
                    last["dynamodb"].get("ApproximateCreationDateTime")
                ),
                "batchSize": len(batch.records),
                "streamArn": self.stream_arn,
            },
        }
        if outcome is not None and not outcome.ok:
            record["responseContext"]["functionError"] = "Unhandled"
        self.on_failure_records.append(record)
        destination = self.mapping.on_failure
        if destination is None:
            logger.warning(
                "%s dropped %d stream records (no on-failure destination)", self.name, len(batch.records)
            )
        elif destination in self.resources.queues:
            self.resources.client("sqs").send_message(
                QueueUrl=self.resources.queues[destination].url, MessageBody=json.dumps(record)
            )
        elif destination in self.resources.topics:
            self.resources.client("sns").publish(
                TopicArn=self.resources.topics[destination], Message=json.dumps(record)
            )


def _iso_seconds(epoch: Any) -> str | None:
    if not isinstance(epoch, int | float):
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------ schedules


_RATE = re.compile(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}
_DAYS = {
    name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)
}


class Occurrences:
    """When a schedule expression fires: ``rate(...)``, ``cron(...)`` (no L/W/#) or ``at(...)``."""

    def __init__(self, expression: str, timezone: str, anchor: datetime) -> None:
        self.expression = expression.strip()
        self.zone = ZoneInfo(timezone)
        self.anchor = anchor
        self._rate: timedelta | None = None
        self._at: datetime | None = None
        self._cron: list[set[int] | None] = []
        if match := _RATE.fullmatch(self.expression):
            self._rate = timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")])
        elif self.expression.startswith("at(") and self.expression.endswith(")"):
            local = datetime.fromisoformat(self.expression[3:-1])
            self._at = local.replace(tzinfo=self.zone).astimezone(UTC)
        elif self.expression.startswith("cron(") and self.expression.endswith(")"):
            self._cron = _parse_cron(self.expression[5:-1])
        else:
            raise TemplateError(f"unsupported schedule expression {expression!r}")

    def next_after(self, after: datetime) -> datetime | None:
        """The first occurrence strictly after ``after``."""
        if self._rate is not None:
            periods = max(0, int((after - self.anchor) / self._rate))
            candidate = self.anchor + periods * self._rate
            while candidate <= after:
                candidate += self._rate
            return candidate
        if self._at is not None:
            return self._at if self._at > after else None
        return self._next_cron(after)

    def _next_cron(self, after: datetime) -> datetime | None:
        minutes, hours, days, months, weekdays, years = self._cron
        local = (after.astimezone(self.zone) + timedelta(minutes=1)).replace(
            second=0, microsecond=0, tzinfo=None
        )
        limit = local + timedelta(days=366 * 5)
        while local < limit:
            if (years and local.year not in years) or (months and local.month not in months):
                local = (local.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            weekday = (local.weekday() + 1) % 7 + 1  # AWS: 1 = SUN ... 7 = SAT
            if (days and local.day not in days) or (weekdays and weekday not in weekdays):
                local = local.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if hours and local.hour not in hours:
                local = local.replace(minute=0) + timedelta(hours=1)
                continue
            if minutes and local.minute not in minutes:
                local += timedelta(minutes=1)
                continue
            return local.replace(tzinfo=self.zone).astimezone(UTC)
        return None


def _parse_cron(body: str) -> list[set[int] | None]:
    fields = body.split()
    if len(fields) != 6:
        raise TemplateError(f"cron({body}) needs 6 fields")
    bounds = [(0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (1, 7, _DAYS), (1970, 2199, {})]
    return [
        _cron_field(text, low, high, names) for text, (low, high, names) in zip(fields, bounds, strict=True)
    ]


def _cron_field(text: str, low: int, high: int, names: dict[str, int]) -> set[int] | None:
    if text in ("*", "?"):
        return None
    if "#" in text or "LW" in text.upper() or re.search(r"(?<![A-Z])[LW](?![A-Z])", text.upper()):
        raise TemplateError(f"cron field {text!r}: L, W and # are not supported by the sandbox")
    values: set[int] = set()
    for part in text.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, b = span.split("-", 1)
            first, last = _cron_value(a, names), _cron_value(b, names)
        else:
            first = _cron_value(span, names)
            last = high if step else first
        values.update(range(first, last + 1, int(step) if step else 1))
    return values


def _cron_value(text: str, names: dict[str, int]) -> int:
    return names[text.upper()] if text.upper() in names else int(text)


@dataclass
class ScheduleFiring:
    schedule: str
    scheduled_time: datetime
    ok: bool


class ScheduleRunner:
    """EventBridge Scheduler on the simulated clock: fires every occurrence due, in time order."""

    def __init__(
        self,
        schedules: list[ScheduleSpec],
        runner: FunctionRunner,
        resources: Resources,
        resolver: Resolver,
        *,
        start: datetime,
        async_retries: int = 2,
    ) -> None:
        self.runner = runner
        self.resources = resources
        self.async_retries = async_retries
        self.firings: list[ScheduleFiring] = []
        self._schedules: list[tuple[ScheduleSpec, Occurrences, datetime | None]] = []
        self._next: dict[str, datetime | None] = {}
        self._inputs: dict[str, Any] = {}
        self._lock = threading.RLock()
        for spec in schedules:
            if not spec.enabled:
                continue
            anchor = datetime.fromisoformat(spec.start_date) if spec.start_date else start
            end = datetime.fromisoformat(spec.end_date) if spec.end_date else None
            occurrences = Occurrences(spec.expression, spec.timezone, anchor.astimezone(UTC))
            self._schedules.append((spec, occurrences, end))
            self._next[spec.logical_id] = occurrences.next_after(max(start, anchor))
            self._inputs[spec.logical_id] = resolver.resolve(spec.input) if spec.input is not None else None
            if spec.target is None and not _universal_send_message(spec.target_arn):
                raise TemplateError(f"schedule {spec.logical_id}: unsupported target {spec.target_arn}")

    def next_due(self) -> datetime | None:
        """The earliest pending occurrence of any schedule."""
        with self._lock:
            return min((when for when in self._next.values() if when is not None), default=None)

    def fire_due(self, now: datetime) -> int:
        """Fire every occurrence at or before ``now`` (each once, whoever calls); how many fired."""
        fired = 0
        with self._lock:
            while (when := self.next_due()) is not None and when <= now:
                for spec, occurrences, end in self._schedules:
                    if self._next[spec.logical_id] == when:
                        if end is None or when <= end:
                            self._fire(spec, when)
                            fired += 1
                        self._next[spec.logical_id] = occurrences.next_after(when)
        return fired

    def _fire(self, spec: ScheduleSpec, when: datetime) -> None:
        payload = self._payload(spec, when)
        target = spec.target
        ok = True
        if target in self.resources.queues:
            self.resources.client("sqs").send_message(
                QueueUrl=self.resources.queues[target].url, MessageBody=payload
            )
        elif target in self.runner.template.functions:
            event = json.loads(payload) if payload.strip() else {}
            # Scheduler invokes asynchronously: Lambda retries a failed event twice by default.
            for _ in range(1 + self.async_retries):
                ok = self.runner.invoke(target, event).ok
                if ok:
                    break
        else:
            body = json.loads(payload)
            self.resources.client("sqs").send_message(
                QueueUrl=body["QueueUrl"], MessageBody=body["MessageBody"]
            )
        self.firings.append(ScheduleFiring(spec.logical_id, when, ok))

    def _payload(self, spec: ScheduleSpec, when: datetime) -> str:
        raw = self._inputs.get(spec.logical_id)
        text = raw if isinstance(raw, str) else json.dumps(raw if raw is not None else {})
        values = {
            "<aws.scheduler.scheduled-time>": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "<aws.scheduler.schedule-arn>": f"arn:aws:scheduler:{self.resources.region}:"
            f"{self.resources.account_id}:schedule/default/{spec.logical_id}",
            "<aws.scheduler.execution-id>": uuid.uuid4().hex[:16],
            "<aws.scheduler.attempt-number>": "1",
        }
        for token, value in values.items():
            text = text.replace(token, value)
        return text


def _universal_send_message(arn: Any) -> bool:
    return isinstance(arn, str) and arn.lower() == "arn:aws:scheduler:::aws-sdk:sqs:sendmessage"


def iter_pumps(runner: FunctionRunner, resources: Resources, clock: Clock) -> Iterator[Pump]:
    """One pump per enabled event source mapping of the template."""
    for mapping in runner.template.mappings:
        if not mapping.enabled:
            continue
        if mapping.source_kind == "sqs":
            yield SqsPump(mapping, runner, resources)
        else:
            yield StreamPump(mapping, runner, resources, clock)
