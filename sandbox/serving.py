"""A WSGI app on loopback HTTP in a background thread (werkzeug's threaded server), quietly.

The simulator and the gateway both serve this way; neither writes an access-log line per request (the
simulator's calls log and the gateway's status counts already record each one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

# How often the serving thread checks for stop(): short, so tests that start many servers stay fast.
POLL_SECONDS = 0.02


class _QuietRequestHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class BackgroundServer:
    """Serves ``app`` on ``host:port`` (port 0 picks a free one) in a daemon thread named ``name``."""

    def __init__(self, app: Callable[..., Any], *, host: str, port: int, name: str) -> None:
        self._app, self._host, self._port, self._name = app, host, port, name
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` (available once started)."""
        if self._server is None:
            raise RuntimeError(f"the {self._name} server is not started")
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> None:
        """Bind and serve; a second call does nothing."""
        if self._server is not None:
            return
        self._server = make_server(
            self._host, self._port, self._app, threaded=True, request_handler=_QuietRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name=self._name,
            kwargs={"poll_interval": POLL_SECONDS},
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port; a second call does nothing."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
