"""Metering the embedded system: per function, what its invocations cost in AWS calls, logs and time.

``Meter(system)`` wraps a started ``EmbeddedSystem`` while it is entered:
- every AWS API call a function makes (botocore ``BaseClient._make_api_call``; the pumps' own polling,
  which Lambda does for free or bills separately, is not counted), with the read units DynamoDB bills
  computed from the items it answers and the keys of the items written (their write units are priced
  at the end, from the items' sizes, ``write_units``);
- every DRS / LWA request a function sends (``requests``' ``HTTPAdapter.send``; urllib3's own retries of
  one request are not seen here, the simulator's call log counts them);
- every invocation's wall time (billed as Lambda does: rounded up to the millisecond);
- every byte the functions log: Powertools' JSON lines and the EMF metric documents printed to stdout,
  each line one CloudWatch Logs event; and the distinct metrics those documents define.

Attribution follows the invocation: the sandbox runs each invocation in the thread that invoked it,
so a context variable set around ``runner.invoke`` names the function for everything that happens
inside.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import math
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from botocore.client import BaseClient
from requests.adapters import HTTPAdapter

from drs_core import schema

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("metered_function", default=None)

_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
_READS = {"GetItem", "Query", "Scan"}
KB = 1024


# ------------------------------------------------------------------------------ DynamoDB item sizes


def attribute_size(value: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value (its documented sizing rules)."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode("utf-8"))
    if kind == "N":
        digits = inner.lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(inner) if isinstance(inner, bytes | bytearray) else len(str(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: member}) for member in inner)
    if kind == "L":
        return 3 + sum(attribute_size(member) + 1 for member in inner)
    if kind == "M":
        return 3 + sum(len(name.encode()) + attribute_size(member) + 1 for name, member in inner.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict[str, dict[str, Any]]) -> int:
    """An item's size: attribute names plus values."""
    return sum(len(name.encode("utf-8")) + attribute_size(value) for name, value in item.items())


def item_kind(table: str, key: dict[str, Any] | None) -> str:
    """``state:SLOT``, ``state:DEVICE``, ``tokens``, ``idempotency``... for a table role and a key."""
    if table != "state" or not key:
        return table
    sk = next(iter(key.get(schema.STATE_SK, {"S": "?"}).values()))
    for prefix in (schema.SLOT_PREFIX, schema.ORDER_PREFIX):
        if str(sk).startswith(prefix):
            return f"state:{prefix.rstrip('#')}"
    return f"state:{sk}"


# ------------------------------------------------------------------------------ what was metered


@dataclass
class Usage:
    """Counters, per function: invocations, billed ms, AWS calls, read units, writes, log events/bytes."""

    invocations: Counter[str] = field(default_factory=Counter)
    billed_ms: Counter[str] = field(default_factory=Counter)
    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (function, service, operation)
    read_units: Counter[str] = field(default_factory=Counter)
    # (function, table role, key as JSON, transactional) → count; priced by ``write_units``.
    writes: Counter[tuple[str, str, str, bool]] = field(default_factory=Counter)
    log_events: Counter[str] = field(default_factory=Counter)
    log_bytes: Counter[str] = field(default_factory=Counter)
    # (function, namespace, metric name, dimensions as JSON): CloudWatch bills each distinct one.
    metrics: set[tuple[str, str, str, str]] = field(default_factory=set)
    external: Counter[tuple[str, str]] = field(default_factory=Counter)  # (function, "drs:replenish" …)
    emf_bytes: Counter[str] = field(default_factory=Counter)  # the part of log_bytes that is EMF documents

    def copy(self) -> Usage:
        return Usage(
            Counter(self.invocations),
            Counter(self.billed_ms),
            Counter(self.calls),
            Counter(self.read_units),
            Counter(self.writes),
            Counter(self.log_events),
            Counter(self.log_bytes),
            set(self.metrics),
            Counter(self.external),
            Counter(self.emf_bytes),
        )

    def __sub__(self, other: Usage) -> Usage:
        """What happened between two snapshots (metrics: the set seen by then)."""
        return Usage(
            self.invocations - other.invocations,
            self.billed_ms - other.billed_ms,
            self.calls - other.calls,
            self.read_units - other.read_units,
            self.writes - other.writes,
            self.log_events - other.log_events,
            self.log_bytes - other.log_bytes,
            set(self.metrics),
            self.external - other.external,
            self.emf_bytes - other.emf_bytes,
        )

    def functions(self) -> set[str]:
        return set(self.invocations)

    def service_calls(self, service: str, functions: set[str] | None = None) -> int:
        return sum(
            n
            for (fn, svc, _), n in self.calls.items()
            if svc == service and (functions is None or fn in functions)
        )

    def only(self, functions: set[str]) -> Usage:
        """The counters of ``functions`` alone."""

        def keep(counter: Counter, index: int | None = None) -> Counter:
            return Counter(
                {k: v for k, v in counter.items() if (k[index] if index is not None else k) in functions}
            )

        return Usage(
            keep(self.invocations),
            keep(self.billed_ms),
            keep(self.calls, 0),
            keep(self.read_units),
            keep(self.writes, 0),
            keep(self.log_events),
            keep(self.log_bytes),
            {m for m in self.metrics if m[0] in functions},
            keep(self.external, 0),
            keep(self.emf_bytes),
        )


class _LogSink(io.TextIOBase):
    """Counts what the functions write (one CloudWatch event per line) and discards it."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter
        self._partial: dict[int, str] = defaultdict(str)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        key = threading.get_ident()
        buffered = self._partial[key] + text
        *lines, self._partial[key] = buffered.split("\n")
        for line in lines:
            if line.strip():
                self._meter.logged(line)
        return len(text)


class Meter:
    """Meters a started ``EmbeddedSystem`` while entered (see the module docstring)."""

    def __init__(self, system: Any) -> None:
        self.system = system
        self.usage = Usage()
        self._lock = threading.Lock()
        self._tables = {info.name: _table_role(info.logical_id) for info in system.resources.tables.values()}
        self._stack = contextlib.ExitStack()

    # --- wiring -------------------------------------------------------------------------------------

    def __enter__(self) -> Meter:
        runner = self.system.runner
        original_invoke = runner.invoke
        original_call = BaseClient._make_api_call
        meter = self

        def invoke(name_or_id: str, event: Any) -> Any:
            function = runner.template.functions[runner.logical_id(name_or_id)].name
            token = _current.set(function)
            try:
                outcome = original_invoke(name_or_id, event)
            finally:
                _current.reset(token)
            with meter._lock:
                meter.usage.invocations[function] += 1
                meter.usage.billed_ms[function] += math.ceil(outcome.duration_ms)
            return outcome

        def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            function = _current.get()
            answer = original_call(client, operation, params)
            if function is not None:
                meter._called(function, client.meta.service_model.service_name, operation, params, answer)
            return answer

        original_send = HTTPAdapter.send

        def send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            function = _current.get()
            if function is not None:
                with meter._lock:
                    meter.usage.external[(function, external_operation(request.url))] += 1
            return original_send(adapter, request, *args, **kwargs)

        runner.invoke = invoke
        BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]
        HTTPAdapter.send = send  # type: ignore[method-assign]
        self._stack.callback(setattr, BaseClient, "_make_api_call", original_call)
        self._stack.callback(setattr, HTTPAdapter, "send", original_send)
        self._stack.callback(delattr, runner, "invoke")

        from drs_core.observability import logger

        sink = _LogSink(self)
        handler = logger.registered_handler
        previous_stream = handler.setStream(sink)  # type: ignore[attr-defined]
        self._stack.callback(handler.setStream, previous_stream)  # type: ignore[attr-defined]
        # EMF documents are print()ed: they go wherever sys.stdout points at flush time.
        self._stack.enter_context(contextlib.redirect_stdout(sink))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def snapshot(self) -> Usage:
        with self._lock:
            return self.usage.copy()

    # --- recording ----------------------------------------------------------------------------------

    def _called(
        self, function: str, service: str, operation: str, params: dict[str, Any], answer: Any
    ) -> None:
        with self._lock:
            self.usage.calls[(function, service, operation)] += 1
            if service != "dynamodb":
                return
            role = self._tables.get(str(params.get("TableName")), str(params.get("TableName")))
            if operation in _READS:
                items = answer.get("Items") if operation != "GetItem" else [answer.get("Item") or {}]
                size = sum(item_size(item) for item in items or [])
                factor = 1.0 if params.get("ConsistentRead") else 0.5
                self.usage.read_units[function] += max(1, math.ceil(size / (4 * KB))) * factor
            elif operation in _WRITES:
                key = params.get("Key") or _key_of(role, params.get("Item") or {})
                self.usage.writes[(function, role, json.dumps(key, sort_keys=True), False)] += 1
            elif operation == "TransactWriteItems":
                for entry in params.get("TransactItems", []):
                    action = next(iter(entry.values()))
                    table = self._tables.get(str(action.get("TableName")), "?")
                    key = action.get("Key") or _key_of(table, action.get("Item") or {})
                    self.usage.writes[(function, table, json.dumps(key, sort_keys=True), True)] += 1

    def logged(self, line: str) -> None:
        function = _current.get() or "(outside a function)"
        with self._lock:
            self.usage.log_events[function] += 1
            self.usage.log_bytes[function] += len(line.encode("utf-8"))
            if line.startswith('{"_aws"'):
                self.usage.emf_bytes[function] += len(line.encode("utf-8"))
                self._metric_document(function, json.loads(line))

    def _metric_document(self, function: str, document: dict[str, Any]) -> None:
        for directive in document["_aws"].get("CloudWatchMetrics", []):
            for dimensions in directive.get("Dimensions", [[]]):
                values = json.dumps({name: document.get(name) for name in dimensions}, sort_keys=True)
                for metric in directive.get("Metrics", []):
                    self.usage.metrics.add((function, directive.get("Namespace", ""), metric["Name"], values))

    # --- pricing DynamoDB writes --------------------------------------------------------------------

    def write_units(self, usage: Usage) -> dict[str, float]:
        """Write units per function: each write costs ⌈size/1 KB⌉ of the item as the run left it (a
        transactional write twice that); a write to a device item also writes both of its GSIs (owner:
        all attributes, report: keys + status) as DynamoDB does for projected attributes."""
        sizes = self._item_sizes()
        units: Counter[str] = Counter()
        for (function, role, key, transactional), count in usage.writes.items():
            size = sizes.get((role, key), KB)  # deleted since: at most one unit (our items are small)
            unit = max(1, math.ceil(size / KB)) * (2 if transactional else 1)
            if item_kind(role, json.loads(key)) == f"state:{schema.DEVICE_SK}":
                unit += max(1, math.ceil(size / KB)) + 1
            units[function] += unit * count
        return dict(units)

    def _item_sizes(self) -> dict[tuple[str, str], int]:
        dynamodb = self.system.resources.client("dynamodb")
        sizes: dict[tuple[str, str], int] = {}
        for name, role in self._tables.items():
            for page in dynamodb.get_paginator("scan").paginate(TableName=name):
                for item in page["Items"]:
                    key = json.dumps(_key_of(role, item), sort_keys=True)
                    sizes[(role, key)] = item_size(item)
        return sizes

    def item_sizes_by_kind(self) -> dict[str, int]:
        """The largest item of each kind (``state:SLOT``, ``tokens`` …) at the end of the run, in bytes."""
        largest: Counter[str] = Counter()
        for (role, key), size in self._item_sizes().items():
            kind = item_kind(role, json.loads(key))
            largest[kind] = max(largest[kind], size)
        return dict(largest)

    def stored_bytes(self) -> int:
        """Bytes stored in every table (items + DynamoDB's 100 bytes of overhead per item)."""
        return sum(size + 100 for size in self._item_sizes().values())


def external_operation(url: str) -> str:
    """``drs:replenish``, ``drs:deviceStatus``, ``lwa:token`` … from a DRS or LWA request URL."""
    parts = urlsplit(url).path.strip("/").split("/")
    if parts[:2] == ["auth", "o2"] and len(parts) > 2:
        return f"lwa:{parts[2]}"
    return f"drs:{parts[0]}"


def _table_role(logical_id: str) -> str:
    lowered = logical_id.lower()
    for role in ("idempotency", "tokens", "state"):
        if role in lowered:
            return role
    return logical_id


def _key_of(role: str, item: dict[str, Any]) -> dict[str, Any]:
    names = {
        "state": (schema.STATE_PK, schema.STATE_SK),
        "tokens": (schema.TOKENS_PK,),
        "idempotency": (schema.IDEMPOTENCY_PK,),
    }.get(role, tuple(item)[:2])
    return {name: item[name] for name in names if name in item}
