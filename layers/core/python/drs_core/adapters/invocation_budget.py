"""The invocation's remaining time as the bound of every DRS/LWA request made inside it.

A request's own retry budget (``HTTP_MAX_TOTAL_SECONDS``) knows nothing of the Lambda timeout: two
calls with a 20 s budget each do not fit a 20 s function, and a function that times out has already
spent whatever it spent (an LWA code, say) and answers nothing. Within ``bounded_by`` the HTTP session
(``adapters.http``) ends every request's retries, backoff waits and socket timeouts ``reserve_seconds``
before the invocation ends, keeping that reserve for the writes that follow; once the time is spent, no
request starts (``requests.Timeout``, which the clients map to their retryable error).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_deadline: ContextVar[float | None] = ContextVar("drs_invocation_deadline", default=None)


def deadline() -> float | None:
    """The ``time.monotonic()`` instant by which requests must have ended, or None outside a budget."""
    return _deadline.get()


def remaining_seconds() -> float | None:
    """Seconds left for requests, or None outside a budget (no bound beyond each request's own)."""
    end = _deadline.get()
    return None if end is None else end - time.monotonic()


@contextmanager
def bounded_by(remaining: float, *, reserve_seconds: float) -> Iterator[None]:
    """Within the block, requests end ``reserve_seconds`` before ``remaining`` seconds from now."""
    token = _deadline.set(time.monotonic() + max(0.0, remaining - reserve_seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


def bounded_by_invocation(context: Any, *, reserve_seconds: float) -> Any:
    """``bounded_by`` the Lambda invocation's remaining time (``context.get_remaining_time_in_millis``)."""
    return bounded_by(context.get_remaining_time_in_millis() / 1000, reserve_seconds=reserve_seconds)
