"""Fixtures for the browser tests: the system ``make sandbox`` serves, on free ports, and a headless
Chromium (Debian's package, driven by Playwright) with a fresh profile and a phone-sized screen.

Screenshots of every step land in ``test-output/browser/<test name>/`` (ignored by git).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

from sandbox.system import EmbeddedSystem
from sandbox.template import load_sandbox_template

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"
# A phone: the app must work at this size.
PHONE = {"width": 390, "height": 844}
# Quiet, hermetic Chromium: no sandbox (root in CI), no GPU, nothing fetched in the background.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = (
    "the browser tests need Chromium: `make test` installs it with apt-get when run as root; "
    "otherwise run `sudo apt-get install chromium` or set CHROMIUM=/path/to/chromium"
)


def chromium_executable() -> str:
    """The system Chromium (``CHROMIUM`` overrides); a missing one fails with how to get it."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


@pytest.fixture(scope="module")
def sandbox() -> Iterator[EmbeddedSystem]:
    """The embedded system as ``make sandbox`` runs it (background pumps), on ports the OS picks."""
    with EmbeddedSystem(
        template=load_sandbox_template(), gateway_port=0, simulator_port=0, background=True
    ) as system:
        yield system


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[BrowserContext]:
    """A fresh Chromium profile (its own user-data dir) with a phone-sized, touch-enabled screen."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=chromium_executable(),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport=PHONE,
            has_touch=True,
            is_mobile=True,
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


@dataclass
class Screenshots:
    """Numbered full-page screenshots of one test's steps."""

    folder: Path
    taken: list[Path] = field(default_factory=list)

    def __call__(self, page: Page, step: str) -> None:
        path = self.folder / f"{len(self.taken) + 1:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Screenshots:
    folder = SCREENSHOTS / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return Screenshots(folder)
