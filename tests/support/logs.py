"""Every log line a test's code writes through the Powertools logger, readable with ``capsys``."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from drs_core.observability import logger


class CurrentStdout:
    """Writes to whatever ``sys.stdout`` is at the moment (capsys swaps it per test phase)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def captured_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """Every log line (debug included) written during the test, readable with ``capsys``."""
    # The Powertools handler keeps the stdout it saw at import: point it at the current one.
    handler = logger.registered_handler
    previous_stream = handler.setStream(CurrentStdout())  # type: ignore[attr-defined]
    previous_level = logger.log_level
    logger.setLevel("DEBUG")
    try:
        yield capsys
    finally:
        handler.setStream(previous_stream)  # type: ignore[attr-defined]
        logger.setLevel(previous_level)
