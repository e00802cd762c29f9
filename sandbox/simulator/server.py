"""Serve the simulator over loopback HTTP in a background thread (werkzeug's threaded server)."""

from __future__ import annotations

import json
import logging
import urllib.request
from types import TracebackType

from drs_core.clock import ManualClock

from ..serving import BackgroundServer
from .app import SimulatorApp
from .state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TOPIC_ARN, Publisher, Simulator

logger = logging.getLogger(__name__)


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
        self._serving = BackgroundServer(
            SimulatorApp(self.simulator), host=host, port=port, name="drs-simulator"
        )

    @property
    def url(self) -> str:
        """The base URL of every route, e.g. ``http://127.0.0.1:8090`` (available once started)."""
        return self._serving.url

    def start(self) -> SimulatorServer:
        """Bind and serve in a daemon thread; returns self."""
        self._serving.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._serving.stop()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
