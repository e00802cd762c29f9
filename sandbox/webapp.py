"""The companion web app (``webapp/``) served by the local gateway under ``/app/``, as CloudFront serves it.

The files are served as they are (no build step); ``config.json`` is generated for this sandbox: the API
is the gateway itself (same origin), Login with Amazon is the simulator's ``/ap/oa`` page and token
route. Responses carry the same security headers as the deployed distribution (``infra/webapp.py``).
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import Any

from werkzeug.security import safe_join
from werkzeug.wrappers import Request, Response

from infra.constants import WEBAPP_CSP
from sandbox.simulator.catalog import DEVICE_MODELS

WEBAPP_DIR = Path(__file__).resolve().parents[1] / "webapp"
APP_PREFIX = "/app"
# How often the app re-reads the devices: readings and notifications move them in the background.
SANDBOX_REFRESH_SECONDS = 2


def content_security_policy(connect_origins: list[str]) -> str:
    """The app's CSP (the deployed one's too): fetch() only to itself and ``connect_origins``."""
    return WEBAPP_CSP.format(connect=" ".join(connect_origins))


def app_config(
    *, api_base_url: str, client_id: str, authorize_url: str, token_url: str, refresh_seconds: int
) -> dict[str, Any]:
    """The ``config.json`` the app reads at start (the deployed one has the same shape)."""
    return {
        "apiBaseUrl": api_base_url,
        "lwa": {"clientId": client_id, "authorizeUrl": authorize_url, "tokenUrl": token_url},
        "deviceModels": [{"modelId": model.model_id, "name": model.name} for model in DEVICE_MODELS.values()],
        "refreshSeconds": refresh_seconds,
    }


class WebAppFiles:
    """Answers ``GET /app/…`` from ``root``; ``/app/config.json`` is this sandbox's configuration."""

    def __init__(self, *, simulator_url: str, client_id: str, root: Path = WEBAPP_DIR) -> None:
        self.root = root
        self.config = app_config(
            api_base_url="",
            client_id=client_id,
            authorize_url=f"{simulator_url}/ap/oa",
            token_url=f"{simulator_url}/auth/o2/token",
            refresh_seconds=SANDBOX_REFRESH_SECONDS,
        )
        self._headers = {
            "Content-Security-Policy": content_security_policy([simulator_url]),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }

    @staticmethod
    def handles(path: str) -> bool:
        return path == APP_PREFIX or path.startswith(APP_PREFIX + "/")

    def respond(self, request: Request) -> Response:
        """The file, the generated config, a redirect from ``/app`` to ``/app/``, or a 404/405."""
        if request.method not in ("GET", "HEAD"):
            return self._answer(Response("Method Not Allowed", 405, content_type="text/plain"))
        if request.path == APP_PREFIX:
            return self._answer(Response("", 308, headers={"Location": APP_PREFIX + "/"}))
        name = request.path.removeprefix(APP_PREFIX + "/") or "index.html"
        if name == "config.json":
            body = json.dumps(self.config)
            return self._answer(Response(body, 200, content_type="application/json"), no_store=True)
        path = safe_join(str(self.root), name)
        if path is None or not Path(path).is_file():
            return self._answer(Response("Not Found", 404, content_type="text/plain"))
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type.endswith("javascript"):
            content_type += "; charset=utf-8"
        return self._answer(Response(Path(path).read_bytes(), 200, content_type=content_type))

    def _answer(self, response: Response, *, no_store: bool = False) -> Response:
        response.headers.update(self._headers)
        # The sandbox serves a working copy: always the files as they are now.
        response.headers["Cache-Control"] = "no-store" if no_store else "no-cache"
        return response
