"""``python -m sandbox.simulator``: the DRS + LWA simulator alone, on its own clock, until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path


def _ensure_core_importable() -> None:
    """Run from a checkout without PYTHONPATH: find ``drs_core`` in ``layers/core/python``."""
    try:
        import drs_core  # noqa: F401
    except ModuleNotFoundError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "layers" / "core" / "python"))


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, serve, and stop cleanly on Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--client-id", default="amzn1.application-oa2-client.sandbox")
    parser.add_argument("--client-secret", default="sandbox-secret")
    parser.add_argument("--notify-url", default=None, help="POST every notification envelope here")
    parser.add_argument("--topic-arn", default=None)
    args = parser.parse_args(argv)
    _ensure_core_importable()
    from .server import SimulatorServer
    from .state import DEFAULT_TOPIC_ARN

    server = SimulatorServer(
        host=args.host,
        port=args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        notify_url=args.notify_url,
        topic_arn=args.topic_arn or DEFAULT_TOPIC_ARN,
    )
    stopped = threading.Event()
    # A service manager stops with SIGTERM; treat it like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopped.set())
    with server:
        print(f"DRS + LWA simulator listening on {server.url} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
        print("stopping", flush=True)


if __name__ == "__main__":
    main()
