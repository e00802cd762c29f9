"""``make sandbox`` / ``python -m sandbox.serve``: the embedded system, serving until Ctrl-C.

The gateway (the product's HTTP API) listens on 127.0.0.1:8080 and the DRS + LWA simulator on :8090.
Simulated time moves only through the simulator's ``POST /__sim/clock``; the event pumps run in the
background, and the schedules fire whenever that clock passes their time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path


def _ensure_importable() -> None:
    """Run from a checkout without PYTHONPATH: find ``drs_core`` and the project's packages."""
    root = Path(__file__).resolve().parents[1]
    for path in (root, root / "layers" / "core" / "python"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, start the system, print where everything is, serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.serve", description=__doc__)
    parser.add_argument("--gateway-port", type=int, default=8080)
    parser.add_argument("--simulator-port", type=int, default=8090)
    parser.add_argument("--aws-port", type=int, default=0, help="the local AWS (moto) port; 0 picks one")
    parser.add_argument("--log-level", default="INFO", help="the functions' log level (JSON logs to stdout)")
    parser.add_argument("--no-cache", action="store_true", help="synthesize the template even if cached")
    args = parser.parse_args(argv)
    _ensure_importable()
    # The sandbox's own notes (a function's error and its traceback, a stuck pump) on stderr.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("sandbox").setLevel(logging.INFO)
    from sandbox.system import EmbeddedSystem
    from sandbox.template import load_sandbox_template

    started = time.perf_counter()
    print("synthesizing the CDK app (cached after the first run) ...", flush=True)
    template = load_sandbox_template(use_cache=not args.no_cache)
    system = EmbeddedSystem(
        template=template,
        gateway_port=args.gateway_port,
        simulator_port=args.simulator_port,
        aws_port=args.aws_port,
        background=True,
        function_log_level=args.log_level,
    )
    stopped = threading.Event()
    # A service manager stops with SIGTERM; treat it like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopped.set())
    with system:
        print(json.dumps(system.resources_json(), indent=2), flush=True)
        print(
            f"ready in {time.perf_counter() - started:.1f} s\n"
            f"  API gateway : {system.gateway_url}  (GET /__sandbox/resources)\n"
            f"  web app     : {system.gateway_url}/app/  (sign in as a simulated Amazon customer)\n"
            f"  simulator   : {system.simulator_url}  (POST /__sim/clock moves simulated time)\n"
            f"  local AWS   : {system.aws.endpoint}  (aws --endpoint-url {system.aws.endpoint} ...)\n"
            f"  functions   : {', '.join(sorted(system.template.function_names))}\n"
            "Ctrl-C to stop",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
        print("stopping", flush=True)


if __name__ == "__main__":
    main()
