"""``make bench``: run every benchmark module in ``bench/`` (each exposes ``run()``) and print its tables.

python -m bench            # all
python -m bench clients    # only the named modules
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import sys
import time
from pathlib import Path

# Benchmarks measure; the functions' INFO logs would only bury the tables, and so would the sandbox's
# notes about its own set-up.
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
logging.getLogger("sandbox").setLevel(logging.ERROR)
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "layers" / "core" / "python"))
NOT_BENCHMARKS = {"table", "__main__"}


def main(selected: list[str]) -> int:
    names = sorted(info.name for info in pkgutil.iter_modules([str(HERE)]) if info.name not in NOT_BENCHMARKS)
    for name in selected or names:
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "run"):
            continue
        started = time.perf_counter()
        print(f"\n=== bench.{name} ===", flush=True)
        module.run()
        print(f"(bench.{name}: {time.perf_counter() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
