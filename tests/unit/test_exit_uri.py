"""Where the DRS settings page may send the customer back (``linking.exit_uri_allowed``)."""

from __future__ import annotations

import pytest

from drs_core.services.linking import exit_uri_allowed


@pytest.mark.parametrize(
    ("uri", "schemes", "loopback", "allowed"),
    [
        ("https://app.example.com/done", (), False, True),
        ("myapp://done", ("myapp",), False, True),
        ("myapp://done", (), False, False),
        # Plain http never, even configured as an app scheme
        ("http://app.example.com/done", ("http",), False, False),
        # Loopback http only where the stage allows it (the sandbox's web app), and only to loopback
        ("http://127.0.0.1:8080/app/", (), False, False),
        ("http://127.0.0.1:8080/app/", (), True, True),
        ("http://localhost/app/", (), True, True),
        ("http://[::1]:8080/", (), True, True),
        ("http://127.0.0.1.example.com/", (), True, False),
        ("http://example.com/?next=127.0.0.1", (), True, False),
        ("javascript:alert(1)", ("javascript",), True, False),
    ],
)
def test_exit_uri_rules(uri: str, schemes: tuple[str, ...], loopback: bool, allowed: bool) -> None:
    assert exit_uri_allowed(uri, schemes, loopback=loopback) is allowed
