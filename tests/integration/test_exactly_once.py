"""Exactly one DRS order per need, under stress: a property test over interleavings.

Hypothesis writes programs of steps for one slot: readings (each replayed under its Idempotency-Key,
some with an older observation arriving late) and deliveries of the due stream records (duplicated,
handed to several concurrent invocations, while DRS fails with 500s or answers slower than the client
waits, after placing the order). Each need ends with the faults cleared and the failed records retried
(as the event source mapping would), and one more low reading if the need is still open. Whatever the
program, the simulator must have placed exactly one order per need, and the slot must hold it.

Concurrent invocations are threads, each with its own batch processor (separate Lambda invocations).
moto is made to handle one AWS request at a time, so each DynamoDB request is atomic as it is in AWS
(moto alone can interleave two conditional writes' check and apply).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto.core.botocore_stubber import BotocoreStubber

from drs_core import dependencies, schema
from drs_core.adapters.items import key_item, slot_from_item
from drs_core.clock import to_iso
from drs_core.domain.models import OrderState, SlotOrder
from tests.support import ordering as fixtures
from tests.support.api_fixtures import Linked
from tests.support.ordering import Ordering

api = fixtures.api
simulator = fixtures.simulator
ordering = fixtures.ordering

# The client gives up on a replenish after this; a "slow" DRS answers after SLOW_MS, having placed it.
READ_TIMEOUT_SECONDS = 0.15
SLOW_MS = 250


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """One AWS request at a time through moto (each request atomic, as in AWS)."""
    lock = threading.Lock()
    original = BotocoreStubber.process_request

    def serialized(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return original(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", serialized)


@pytest.fixture
def stressed(ordering: Ordering, atomic_moto: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ordering]:
    """``ordering`` with DRS calls that time out quickly (so "slow" faults cost little wall time)."""
    monkeypatch.setenv("HTTP_READ_TIMEOUT", str(READ_TIMEOUT_SECONDS))
    monkeypatch.setenv("HTTP_MAX_ATTEMPTS", "2")
    dependencies.reset()
    yield ordering
    # The adapters built from the short timeouts must not outlive this test (the next module's
    # functions would time out DRS calls after 0.15 s).
    dependencies.reset()


@dataclass(frozen=True)
class Drain:
    """The device reports ``amount`` less, replayed ``replays`` times; maybe an older level arrives late."""

    amount: float
    replays: int
    late: bool


@dataclass(frozen=True)
class Deliver:
    """The due records so far, each ``copies`` times, to ``invocations`` concurrent invocations."""

    copies: int
    invocations: int
    fault: str  # none | error | flaky | slow


steps = st.one_of(
    st.builds(Drain, amount=st.sampled_from([3.0, 7.5, 12.0]), replays=st.integers(0, 2), late=st.booleans()),
    st.builds(
        Deliver,
        copies=st.integers(1, 3),
        invocations=st.integers(1, 3),
        fault=st.sampled_from(["none", "none", "error", "flaky", "slow"]),
    ),
)


class Run:
    """One program's device, its level, and the records the mapping still has to retry."""

    def __init__(self, ordering: Ordering, device: Linked) -> None:
        self.ordering = ordering
        self.device = device
        self.level = 30.0
        self.sent = 0
        self.retry: list[dict[str, Any]] = []

    def read(
        self,
        remaining: float,
        *,
        at: str | None = None,
        key: str | None = None,
        replays: int = 0,
        **extra: Any,
    ) -> None:
        reading = {
            **extra,
            "slotId": "Filter",
            "observedAt": at or self.ordering.now_iso(),
            "remainingQuantity": remaining,
        }
        for _ in range(replays + 1):
            answer = self.ordering.post_usage(self.device, [reading], key=key)
            assert answer.status == 202, answer.body

    def drain(self, step: Drain) -> None:
        before = self.ordering.now_iso()
        self.ordering.clock.advance(600)
        self.level = max(self.level - step.amount, 0.5)
        self.sent += 1
        self.read(self.level, key=f"{self.device.serial}-{self.sent}", replays=step.replays)
        if step.late:
            # An older, higher level arriving after the newer one: acknowledged, never applied.
            self.read(self.level + step.amount, at=before)

    def deliver(self, step: Deliver) -> None:
        sim = self.ordering.api.sim
        if step.fault == "error":
            sim.set_fault("replenish", 1.0, status=500)
        elif step.fault == "flaky":
            sim.set_fault("replenish", 0.5, status=503, seed=self.sent)
        elif step.fault == "slow":
            sim.set_fault("replenish", 1.0, status=200, latency_ms=SLOW_MS)
        records = self.retry + self.ordering.tap.due()
        self.retry = []
        if records:
            batch = records * step.copies
            with ThreadPoolExecutor(max_workers=step.invocations) as pool:
                answers = list(pool.map(lambda _: self.invoke(batch), range(step.invocations)))
            failed = {f["itemIdentifier"] for answer in answers for f in answer["batchItemFailures"]}
            self.retry = [r for r in records if r["dynamodb"]["SequenceNumber"] in failed]
        sim.set_fault("replenish", 0)

    def invoke(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """One invocation of the reorder function (its own processor: a separate Lambda invocation)."""
        processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
        return process_partial_response(
            event={"Records": records},
            record_handler=self.ordering.reorder.record_handler,
            processor=processor,
            context=self.ordering.context,
        )

    def settle(self) -> None:
        """Faults gone: the mapping retries what failed; a need still open gets one more low reading."""
        for _ in range(3):
            self.deliver(Deliver(copies=1, invocations=1, fault="none"))
            if self.slot().order.state is OrderState.PLACED:
                return
            self.drain(Drain(amount=max(self.level - 5.0, 0.1), replays=0, late=False))
        self.deliver(Deliver(copies=1, invocations=1, fault="none"))

    def slot(self):
        key = key_item(schema.slot_key(self.device.serial, "Filter"))
        aws = self.ordering.aws
        return slot_from_item(
            aws.dynamodb.get_item(TableName=aws.state_table, Key=key, ConsistentRead=True)["Item"]
        )

    def end_need(self) -> None:
        """The test order is cancelled (no cooldown: ours) and the customer refills the slot."""
        token = dependencies.token_vault().access_token(self.device.serial)
        dependencies.drs_client().cancel_test_orders(token, "Filter")
        current = self.slot().order
        cancelled = SlotOrder(OrderState.CANCELLED, current.instance_id)
        dependencies.repository().set_slot_order(
            self.device.serial, "Filter", expected_states={OrderState.PLACED}, new=cancelled
        )
        self.ordering.clock.advance(600)
        refill = {
            "slotId": "Filter",
            "observedAt": self.ordering.now_iso(),
            "refilledQuantity": 30 - self.level,
        }
        assert self.ordering.post_usage(self.device, [refill]).status == 202
        self.level = 30.0
        self.ordering.tap.read()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=st.lists(steps, min_size=3, max_size=8), needs=st.integers(1, 2))
def test_exactly_one_replenish_per_need(
    stressed: Ordering, program: list[Drain | Deliver], needs: int
) -> None:
    # Given a freshly linked test device whose 30-unit Filter reorders at 6
    placed_before = len(stressed.placed())
    run = Run(stressed, stressed.api.link())
    run.read(30.0, originalQuantity=30.0)
    stressed.tap.read()
    for need in range(1, needs + 1):
        # When the program runs: readings, replays, late readings, duplicated concurrent deliveries, faults
        for step in program:
            if isinstance(step, Drain):
                run.drain(step)
            else:
                run.deliver(step)
        run.settle()
        # Then DRS placed exactly one order for this need, and the slot holds it
        placed = stressed.placed()[placed_before:]
        assert len(placed) == need, [(c["at"], c["detailCode"]) for c in placed]
        slot = run.slot()
        assert slot.order.state is OrderState.PLACED and slot.order.instance_id
        if need < needs:
            run.end_need()


def test_concurrent_deliveries_of_one_record_place_one_order(stressed: Ordering) -> None:
    # Given one due record
    run = Run(stressed, stressed.api.link())
    run.read(30.0, originalQuantity=30.0)
    stressed.tap.read()
    run.drain(Drain(amount=25.0, replays=0, late=False))
    records = stressed.tap.due()
    assert len(records) == 1
    # When eight invocations handle it at once, each with the record three times
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: run.invoke(records * 3), range(8)))
    # Then none failed and DRS placed exactly one order
    assert all(answer == {"batchItemFailures": []} for answer in answers)
    assert len(stressed.placed()) == 1
    assert to_iso(stressed.clock.now() - timedelta(0)) == stressed.placed()[0]["at"]
