"""Serve the simulator over loopback HTTP in a background thread (werkzeug's threaded server)."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from types import TracebackType

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from drs_core.clock import ManualClock

from .app import SimulatorApp
from .state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TOPIC_ARN, Publisher, Simulator

logger = logging.getLogger(__name__)

# How often the serving thread checks for stop(): short, so tests that start many servers stay fast.
_POLL_SECONDS = 0.02


class _QuietRequestHandler(WSGIRequestHandler):
    """No access-log line per request: the calls log already records every DRS/LWA call."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class HttpPublisher:
    """POSTs each notification envelope as JSON to a URL, best-effort (errors are logged, not raised)."""

    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds

    def publish(self, envelope: dict[str, object]) -> None:
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own --notify-url
            self.url,
            data=json.dumps(envelope).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds):  # noqa: S310
                pass
        except OSError as exc:
            logger.warning(
                "could not POST notification %s to %s: %s", envelope.get("MessageId"), self.url, exc
            )


class SimulatorServer:
    """The DRS + LWA simulator on ``host:port`` (port 0 picks a free one); a context manager too."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        clock: ManualClock | None = None,
        publisher: Publisher | None = None,
        notify_url: str | None = None,
        topic_arn: str = DEFAULT_TOPIC_ARN,
    ) -> None:
        if publisher is None and notify_url:
            publisher = HttpPublisher(notify_url)
        self.simulator = Simulator(
            clock=clock,
            client_id=client_id,
            client_secret=client_secret,
            topic_arn=topic_arn,
            publisher=publisher,
        )
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL of every route, e.g. ``http://127.0.0.1:8090`` (available once started)."""
        if self._server is None:
            raise RuntimeError("the simulator server is not started")
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> SimulatorServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._server = make_server(
            self._host,
            self._port,
            SimulatorApp(self.simulator),
            threaded=True,
            request_handler=_QuietRequestHandler,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="drs-simulator",
            kwargs={"poll_interval": _POLL_SECONDS},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
