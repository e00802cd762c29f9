"""Fixtures for the sandbox tests: a DRS + LWA simulator on a free loopback port, on a manual clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from drs_core.clock import ManualClock
from sandbox.simulator import SimulatorServer


class RecordingPublisher(list[dict[str, Any]]):
    """Stands in for the SNS topic: a list of every envelope published, in order."""

    def publish(self, envelope: dict[str, Any]) -> None:
        self.append(envelope)


@pytest.fixture
def published() -> RecordingPublisher:
    """What the ``simulator`` fixture published (a list of SNS envelopes)."""
    return RecordingPublisher()


@pytest.fixture
def simulator(published: RecordingPublisher) -> Iterator[SimulatorServer]:
    """A started simulator (standalone credentials, clock at 2026-01-01T00:00Z), stopped afterwards."""
    with SimulatorServer(host="127.0.0.1", port=0, clock=ManualClock(), publisher=published) as server:
        yield server
