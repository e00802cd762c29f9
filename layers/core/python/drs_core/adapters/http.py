"""One pooled HTTP session for the DRS and LWA clients, with bounded retries done by urllib3.

Retries happen inside urllib3 (``Retry`` mounted through ``HTTPAdapter``), not in hand-written loops:
429 and 5xx answers, connect errors and read timeouts are retried for every method with exponential
backoff plus jitter, ``Retry-After`` is honoured, and the last response is handed back to the caller
(``raise_on_status=False``) so the clients can map it to a typed error. Retrying POST is safe here:
DRS keeps at most one open order per slot and answers ``ORDER_INPROGRESS`` to a duplicate replenish,
and LWA token calls are idempotent until a code is used (a reused code is a clean ``invalid_grant``).

Besides the attempt count, a wall-clock budget bounds each request: no new attempt starts once
``max_total_seconds`` have passed since the first one, and no backoff or ``Retry-After`` wait is taken
that would end past that budget. A request can therefore last at most the budget plus one attempt's
own timeouts. Inside an invocation budget (``adapters.invocation_budget``) the budget ends no later than
the invocation's, and each attempt's socket timeouts are cut to the time left.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from drs_core.adapters import invocation_budget

__all__ = ["RETRY_STATUSES", "DeadlineRetry", "Timeouts", "build_session"]

#: Answers worth another attempt: throttling and server-side trouble.
RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Timeouts:
    """Per-attempt socket timeouts in seconds, passed by the clients on every request."""

    connect: float = 3.05
    read: float = 10.0

    def as_requests(self) -> tuple[float, float]:
        """The ``(connect, read)`` tuple ``requests`` expects as ``timeout=``."""
        return (self.connect, self.read)


class DeadlineRetry(Retry):
    """urllib3 ``Retry`` that also stops once a wall-clock deadline for the whole request has passed.

    ``max_total_seconds`` is the budget; ``deadline`` is the ``time.monotonic()`` instant it ends.
    The adapter below stamps ``deadline`` just before the first attempt; both travel through
    ``new()``, which urllib3 calls on every ``increment()``.
    """

    def __init__(
        self, *args: Any, max_total_seconds: float | None = None, deadline: float | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.max_total_seconds = max_total_seconds
        self.deadline = deadline

    def new(self, **kw: Any) -> DeadlineRetry:
        kw.setdefault("max_total_seconds", self.max_total_seconds)
        kw.setdefault("deadline", self.deadline)
        return super().new(**kw)

    def started_now(self) -> DeadlineRetry:
        """A copy whose deadline counts from this instant (called once per request, before attempt 1),
        and ends no later than the invocation's budget, if one is set."""
        end = invocation_budget.deadline()
        if self.max_total_seconds is not None:
            own = time.monotonic() + self.max_total_seconds
            end = own if end is None else min(end, own)
        return self if end is None else self.new(deadline=end)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> DeadlineRetry:
        # The attempt count and the method/status rules come first (they raise MaxRetryError themselves).
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if retry.deadline is None:
            if retry.max_total_seconds is None:
                return retry
            # Used outside build_session's adapter: count from the first failure instead.
            retry = retry.new(deadline=time.monotonic() + retry.max_total_seconds)
        remaining = retry.deadline - time.monotonic()
        if remaining <= 0 or retry._planned_wait(response) >= remaining:
            reason = error or ResponseError(
                f"retry budget of {retry.max_total_seconds}s spent"
                + (f" (last status {response.status})" if response is not None else "")
            )
            raise MaxRetryError(_pool, url, reason) from reason  # type: ignore[arg-type]
        return retry

    def get_backoff_time(self) -> float:
        # Jitter must not carry a sleep past the deadline.
        backoff = super().get_backoff_time()
        if self.deadline is None:
            return backoff
        return max(0.0, min(backoff, self.deadline - time.monotonic()))

    def _planned_wait(self, response: Any) -> float:
        """The wait urllib3 is about to take before the next attempt (Retry-After, else backoff)."""
        if response is not None and self.respect_retry_after_header:
            try:
                retry_after = self.get_retry_after(response)
            except InvalidHeader:
                retry_after = None
            if retry_after:
                return retry_after
        # Backoff without jitter: the lower bound of the coming sleep, enough to decide "worth it".
        consecutive = len(self.history)
        if consecutive <= 1:
            return 0.0
        return min(self.backoff_max, self.backoff_factor * (2 ** (consecutive - 1)))


class _DeadlineAdapter(HTTPAdapter):
    """HTTPAdapter that hands urllib3 a freshly stamped ``DeadlineRetry`` for every request.

    ``HTTPAdapter.send`` reads ``self.max_retries`` once per request, so a property gives each request
    its own deadline without mutating shared state (safe when threads share the session).
    """

    _retry_template: Retry

    @property  # type: ignore[override]
    def max_retries(self) -> Retry:
        template = self._retry_template
        return template.started_now() if isinstance(template, DeadlineRetry) else template

    @max_retries.setter
    def max_retries(self, value: Retry) -> None:
        self._retry_template = value

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, **kw: Any):  # type: ignore[override]
        left = invocation_budget.remaining_seconds()
        if left is not None:
            if left <= 0:
                raise requests.Timeout("the invocation's time for requests is spent", request=request)
            timeout = _cut_to(timeout, left)
        return super().send(request, stream=stream, timeout=timeout, **kw)


def _cut_to(timeout: Any, seconds: float) -> Any:
    """``timeout`` (a number or a ``(connect, read)`` pair) with no part longer than ``seconds``."""
    if isinstance(timeout, tuple):
        return tuple(seconds if part is None else min(part, seconds) for part in timeout)
    return seconds if timeout is None else min(timeout, seconds)


class _RedactAccessTokenInUrls(logging.Filter):
    """urllib3 logs request URLs (at WARNING when it retries); LWA tokeninfo carries a token in its query."""

    _pattern = re.compile(r"(access_token=)[^&\s'\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the handler's problem; a filter must never raise
            return True
        if "access_token=" in message:
            record.msg = self._pattern.sub(r"\1***", message)
            record.args = ()
        return True


def _install_url_redaction() -> None:
    for name in ("urllib3.connectionpool", "urllib3.util.retry"):
        target = logging.getLogger(name)
        if not any(isinstance(existing, _RedactAccessTokenInUrls) for existing in target.filters):
            target.addFilter(_RedactAccessTokenInUrls())


_install_url_redaction()


def build_session(
    *,
    max_attempts: int = 4,
    max_total_seconds: float = 20.0,
    backoff_factor: float = 0.2,
    backoff_max: float = 5.0,
    backoff_jitter: float = 0.2,
    pool_maxsize: int = 10,
) -> requests.Session:
    """Build a pooled ``requests.Session`` whose requests retry 429/5xx, connect errors and read timeouts.

    ``max_attempts`` counts the first try (4 → up to 3 retries). Waits grow as
    ``backoff_factor * 2**(n-1)`` plus up to ``backoff_jitter`` seconds, capped at ``backoff_max``; a
    ``Retry-After`` header replaces that wait. ``max_total_seconds`` bounds the whole request (see the
    module docstring). The final response, retryable or not, is returned rather than raised; timeouts
    and connection failures that outlast the retries surface as ``requests`` exceptions. Timeouts are
    not set here: pass ``timeout=Timeouts().as_requests()`` on every request.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    retry = DeadlineRetry(
        total=max_attempts - 1,
        connect=None,
        read=None,
        status=None,
        # Anything else (TLS failures, mostly) will not heal by retrying.
        other=0,
        allowed_methods=None,  # None = every method, POST and DELETE included (see module docstring)
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        backoff_jitter=backoff_jitter,
        respect_retry_after_header=True,
        raise_on_status=False,
        max_total_seconds=max_total_seconds,
    )
    adapter = _DeadlineAdapter(pool_maxsize=pool_maxsize, max_retries=retry)
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
