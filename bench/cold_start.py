"""Cold start: import time of every handler in a fresh interpreter, against ``import boto3`` + one client.

Each measurement is its own ``python`` process, started in the function's folder the way Lambda starts
one in ``/var/task``: the folder first on ``sys.path``, then the core layer, then the installed
dependencies; the settings each function declares set to dummy values (nothing is called at import).
The time is taken inside the process around the import only, so interpreter start-up is left out on
both sides. Median of ``RUNS`` processes, taken in rounds over all modules, after one untimed process
that writes the bytecode cache
(``PYTHONPYCACHEPREFIX`` under ``.sandbox-cache/``, so the checkout stays clean).

Every handler builds its AWS clients on first use (``drs_core.dependencies``, the stores, and the
Powertools idempotency layers, which share the store's client), none at import: the baseline's client is
what a handler's first invocation adds, the same for all of them, so the ratio compares like with like.

A second column imports with no bytecode at all (an empty cache, one run each): what Lambda pays on
every cold start for code shipped without ``.pyc`` files, which is how the layers ship when no Python of
the runtime's version is at hand at deploy time (``layers/bytecode.py``).
For a handler over the target, ``-X importtime`` says where its time goes.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench.table import print_table

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
CORE_LAYER = ROOT / "layers" / "core" / "python"
PYCACHE = ROOT / ".sandbox-cache" / "pycache"
RUNS = 5
TARGET_RATIO = 1.5
BASELINE = "import boto3 + one client"
# Every setting a function may require (drs_core.settings.ENV_VARS), with harmless values: the handlers
# build settings and adapter objects at import, but call nothing.
DUMMY_SETTINGS = {
    "STATE_TABLE": "bench-state",
    "TOKENS_TABLE": "bench-tokens",
    "IDEMPOTENCY_TABLE": "bench-idempotency",
    "TOKENS_KMS_KEY_ID": "00000000-0000-0000-0000-000000000000",
    "LWA_CLIENT_ID": "amzn1.application-oa2-client.bench",
    "LWA_CLIENT_SECRET_NAME": "bench/lwa-client-secret",
    "REPORT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bench-report-jobs",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "POWERTOOLS_METRICS_NAMESPACE": "DrsReplenishment",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}
_TIMED_IMPORT = (
    "import sys, time\n"
    "started = time.perf_counter()\n"
    "{body}\n"
    "sys.stdout.write(repr(time.perf_counter() - started))\n"
)
_BASELINE_BODY = "import boto3\nboto3.client('dynamodb')"
_HANDLER_BODY = "import handler"


@dataclass(frozen=True)
class Imports:
    """One module's import: median seconds with bytecode, and one run without any."""

    name: str
    median_s: float
    runs_s: tuple[float, ...]
    no_bytecode_s: float


@dataclass(frozen=True)
class ColdStart:
    baseline: Imports
    handlers: tuple[Imports, ...]
    # For each handler over the target: its direct imports by cumulative time, (module, milliseconds).
    over_target: dict[str, tuple[tuple[str, float], ...]]

    def ratio(self, handler: Imports) -> float:
        return handler.median_s / self.baseline.median_s


def handler_names() -> list[str]:
    """Every function folder with a ``handler.py``."""
    return sorted(path.parent.name for path in FUNCTIONS.glob("*/handler.py"))


def handler_environment(name: str, pycache: Path) -> dict[str, str]:
    """A process environment like Lambda's for function ``name``: its settings, the core layer on the path."""
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(DUMMY_SETTINGS)
    env.update(
        POWERTOOLS_SERVICE_NAME=name,
        AWS_LAMBDA_FUNCTION_NAME=name,
        PYTHONPATH=str(CORE_LAYER),
        PYTHONPYCACHEPREFIX=str(pycache),
    )
    return env


def _import_once(name: str, body: str, cwd: Path, pycache: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - our own interpreter and fixed code
        [sys.executable, *flags, "-c", _TIMED_IMPORT.format(body=body)],
        cwd=cwd,
        env=handler_environment(name, pycache),
        capture_output=True,
        text=True,
        check=True,
    )


def _measure_all(modules: list[tuple[str, str, Path]]) -> list[Imports]:
    """Every module's imports, in rounds (one run of each per round), so that a busy moment of the
    machine weighs on all of them alike rather than on whichever was being measured."""
    no_bytecode = {}
    for name, body, cwd in modules:
        with tempfile.TemporaryDirectory(prefix="bench-nopyc-") as empty:
            no_bytecode[name] = float(_import_once(name, body, cwd, Path(empty)).stdout)
        _import_once(name, body, cwd, PYCACHE)  # writes the bytecode the timed runs read
    runs: dict[str, list[float]] = {name: [] for name, _, _ in modules}
    for _ in range(RUNS):
        for name, body, cwd in modules:
            runs[name].append(float(_import_once(name, body, cwd, PYCACHE).stdout))
    return [
        Imports(name, statistics.median(runs[name]), tuple(runs[name]), no_bytecode[name])
        for name, _, _ in modules
    ]


def breakdown(name: str, top: int = 7) -> tuple[tuple[str, float], ...]:
    """Where a handler's import goes (``-X importtime``): its direct imports by cumulative time, and the
    module body itself (what its top level builds), largest first."""
    answer = _import_once(name, _HANDLER_BODY, FUNCTIONS / name, PYCACHE, "-X", "importtime")
    rows = []
    for line in answer.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, module = line.removeprefix("import time:").split("|")
        depth = (len(module) - len(module.lstrip(" "))) // 2
        if module.strip() == "handler":
            rows.append(("handler.py module body (self)", int(self_us) / 1000))
        elif depth == 1:
            rows.append((module.strip(), int(cumulative_us) / 1000))
    return tuple(sorted(rows, key=lambda row: -row[1])[:top])


@cache
def measure() -> ColdStart:
    """Measure the baseline and every handler (cached: the summary reuses this run's figures)."""
    PYCACHE.mkdir(parents=True, exist_ok=True)
    modules = [(BASELINE, _BASELINE_BODY, Path(tempfile.gettempdir()))]
    modules += [(name, _HANDLER_BODY, FUNCTIONS / name) for name in handler_names()]
    baseline, *handlers = _measure_all(modules)
    slow = [h.name for h in handlers if h.median_s / baseline.median_s > TARGET_RATIO]
    return ColdStart(baseline, tuple(handlers), {name: breakdown(name) for name in slow})


def run() -> None:
    result = measure()
    base = result.baseline
    rows: list[list[object]] = [
        [
            f"{base.name} (baseline)",
            base.median_s * 1000,
            max(base.runs_s) * 1000,
            1.0,
            base.no_bytecode_s * 1000,
        ]
    ]
    for handler in result.handlers:
        rows.append(
            [
                f"functions/{handler.name}/handler.py",
                handler.median_s * 1000,
                max(handler.runs_s) * 1000,
                result.ratio(handler),
                handler.no_bytecode_s * 1000,
            ]
        )
    print_table(
        f"Cold start: import in a fresh interpreter (median of {RUNS}; target ≤ {TARGET_RATIO} x baseline)",
        ["module", "median ms", "max ms", "x baseline", "no .pyc ms (1 run)"],
        rows,
    )
    for name, rows in result.over_target.items():
        print_table(
            f"Why functions/{name} is over the target: its imports by cumulative time (-X importtime; "
            "boto3 and its client are the baseline's share)",
            ["import", "ms"],
            [list(row) for row in rows],
        )
