"""Runs the template's functions in this process: ``functions/<name>/handler.py``, loaded by path.

The process environment is the union of the functions' environments as the template sets them (refs
resolved by moto to physical names), plus the sandbox's overrides (simulator endpoints, client id). A
variable the functions disagree on is reported in ``conflicts`` and set to each function's own value
around its invocations. Invocations are serialized: in Lambda each runs in its own process, here they
share modules, the Powertools logger and the environment, so running one at a time keeps them apart.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from drs_core import dependencies

from .aws import DeployedFunction, EnvironmentPatch, SandboxError
from .template import ROOT, FunctionSpec, SandboxTemplate

logger = logging.getLogger(__name__)
FUNCTIONS_DIR = ROOT / "functions"
# Set per function by Lambda (and read by Powertools), so never part of the shared environment.
_PER_FUNCTION_VARS = frozenset({"POWERTOOLS_SERVICE_NAME", "AWS_LAMBDA_FUNCTION_NAME"})


@dataclass
class LambdaContext:
    """The Lambda context object, as much of it as handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None
    _started: float = field(default_factory=time.monotonic)

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"sandbox/[$LATEST]{self.aws_request_id[:8]}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


@dataclass
class Invocation:
    """One invocation's outcome: the handler's return value, or the exception it raised."""

    function: str  # folder name under functions/
    request_id: str
    result: Any = None
    error: BaseException | None = None
    duration_ms: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class FunctionRunner:
    """Loads every function of the template and invokes them by logical id or folder name."""

    def __init__(
        self,
        template: SandboxTemplate,
        deployed: Mapping[str, DeployedFunction],
        *,
        functions_dir: Path = FUNCTIONS_DIR,
        overrides: Mapping[str, str] | None = None,
        log_level: str | None = None,
    ) -> None:
        self.template = template
        self.deployed = dict(deployed)
        self.functions_dir = functions_dir
        self.overrides = dict(overrides or {})
        self.log_level = log_level
        self.invocations: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.timeouts: Counter[str] = Counter()
        self.metrics: Counter[str] = Counter()  # EMF metric values the functions emitted, summed by name
        self.conflicts: dict[str, dict[str, str]] = {}
        # The latest failed invocations (function, request id, error), to explain an error count.
        self.recent_errors: deque[tuple[str, str, str]] = deque(maxlen=100)
        self.on_invocation: list[Callable[[Invocation], None]] = []
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._modules: dict[str, ModuleType] = {}
        self._env = EnvironmentPatch()
        self._lock = threading.RLock()
        self._applied: str | None = None
        self._previous_log_level: int | None = None

    # --------------------------------------------------------------------------------- lifecycle

    def load(self) -> FunctionRunner:
        """Set the shared environment, then import every handler (a failing import fails the start)."""
        self._env.update(self.shared_environment())
        dependencies.reset()
        failures = []
        for lid, spec in self.template.functions.items():
            try:
                self._handlers[lid] = self._import(spec)
            except Exception as exc:
                failures.append(f"{spec.name}: {type(exc).__name__}: {exc}")
        if failures:
            self.close()
            raise SandboxError("functions failed to load (cold start): " + "; ".join(failures))
        if self.log_level:
            from drs_core.observability import logger as function_logger

            self._previous_log_level = function_logger.log_level
            function_logger.setLevel(self.log_level)
        return self

    def close(self) -> None:
        """Restore the environment and the log level this runner changed."""
        self._env.restore()
        dependencies.reset()
        if self._previous_log_level is not None:
            from drs_core.observability import logger as function_logger

            function_logger.setLevel(self._previous_log_level)
            self._previous_log_level = None

    def shared_environment(self) -> dict[str, str]:
        """The union of the functions' variables (minus per-function ones), with the overrides on top."""
        values: dict[str, dict[str, str]] = {}
        for fn in self.deployed.values():
            spec = self.template.functions.get(fn.logical_id)
            if spec is None:
                continue
            for name, value in fn.environment.items():
                if name not in _PER_FUNCTION_VARS and name not in self.overrides:
                    values.setdefault(name, {})[spec.name] = value
        self.conflicts = {name: by_fn for name, by_fn in values.items() if len(set(by_fn.values())) > 1}
        for name, by_fn in self.conflicts.items():
            logger.warning("functions disagree on %s: %s (set per invocation)", name, sorted(by_fn))
        shared = {
            name: next(iter(by_fn.values())) for name, by_fn in values.items() if name not in self.conflicts
        }
        return {**shared, **self.overrides}

    def _import(self, spec: FunctionSpec) -> Callable[[Any, Any], Any]:
        module_file, _, attribute = spec.handler.rpartition(".")
        folder = self.functions_dir / spec.name
        path = folder / f"{module_file.replace('.', '/')}.py"
        if not path.is_file():
            raise SandboxError(f"no handler file {path}")
        module_name = f"sandbox_functions.{spec.name}.{module_file}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise SandboxError(f"cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        # Lambda puts the function's folder on sys.path: a handler may import its sibling modules.
        sys.path.insert(0, str(folder))
        sys.modules[module_name] = module
        try:
            with self._function_env(spec):
                module_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        finally:
            sys.path.remove(str(folder))
        self._modules[spec.name] = module
        return getattr(module, attribute)

    # --------------------------------------------------------------------------------- invoking

    def logical_id(self, name_or_id: str) -> str:
        """Accept a folder name (``companion_api``) or a logical id."""
        if name_or_id in self.template.functions:
            return name_or_id
        return self.template.function_named(name_or_id).logical_id

    def module(self, name: str) -> ModuleType:
        """The loaded handler module of function ``name`` (tests inspect fakes through it)."""
        return self._modules[name]

    def invoke(self, name_or_id: str, event: Any) -> Invocation:
        """Invoke one function with ``event``; an exception is captured, never raised."""
        lid = self.logical_id(name_or_id)
        spec = self.template.functions[lid]
        deployed = self.deployed.get(lid)
        context = LambdaContext(
            function_name=deployed.name if deployed else spec.name,
            invoked_function_arn=deployed.arn if deployed else f"arn:aws:lambda:::function:{spec.name}",
            memory_limit_in_mb=spec.memory_mb,
            timeout_seconds=spec.timeout_seconds,
        )
        outcome = Invocation(function=spec.name, request_id=context.aws_request_id)
        with self._function_env(spec):
            started = time.perf_counter()
            try:
                outcome.result = self._handlers[lid](event, context)
            except Exception as exc:
                outcome.error = exc
                logger.info("%s raised %s: %s", spec.name, type(exc).__name__, exc, exc_info=True)
            outcome.duration_ms = (time.perf_counter() - started) * 1000
            self.invocations[spec.name] += 1
            self._collect_metrics()
        if outcome.duration_ms > spec.timeout_seconds * 1000:
            # Lambda would have stopped it and reported an error; a thread cannot be stopped, so the
            # sandbox counts it and says so instead.
            outcome.timed_out = True
            self.timeouts[spec.name] += 1
            logger.warning(
                "%s ran %.0f ms, over its %d s timeout", spec.name, outcome.duration_ms, spec.timeout_seconds
            )
        if outcome.error is not None:
            self.errors[spec.name] += 1
            self.recent_errors.append(
                (spec.name, outcome.request_id, f"{type(outcome.error).__name__}: {outcome.error}")
            )
        for listener in self.on_invocation:
            listener(outcome)
        return outcome

    def _collect_metrics(self) -> None:
        """Sum what the invocation added to the shared Powertools Metrics, then clear it.

        The sandbox runs with POWERTOOLS_METRICS_DISABLED (no CloudWatch here, no EMF lines on stdout);
        Powertools then never clears its metric set, and would print it anyway once 100 values pile up.
        """
        from drs_core.observability import metrics

        for name, metric in metrics.metric_set.items():
            self.metrics[name] += sum(metric.get("Value", []))
        metrics.clear_metrics()

    @contextmanager
    def _function_env(self, spec: FunctionSpec) -> Iterator[None]:
        """Hold the lock while this function's own variables are in place."""
        with self._lock:
            deployed = self.deployed.get(spec.logical_id)
            self._env.set("AWS_LAMBDA_FUNCTION_NAME", deployed.name if deployed else spec.name)
            if self.conflicts and self._applied != spec.logical_id:
                own = deployed.environment if deployed else {}
                for name in self.conflicts:
                    self._env.set(name, own.get(name))
                self._applied = spec.logical_id
                dependencies.reset()  # the cached settings and adapters were built from other values
            yield
