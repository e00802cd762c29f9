"""Request paths as our functions read them: each segment percent-decoded exactly once.

Clients may send a serial's ``+`` literally or as ``%2B``; the device authorizer and the functions
decode path parameters with this one function, so both see the same serial either way. A segment that
decodes to something holding ``/`` is left as sent (it names no resource of ours and fails validation).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote


def decoded_segment(segment: str) -> str:
    """One path segment (or path parameter) percent-decoded once."""
    decoded = unquote(segment)
    return segment if "/" in decoded else decoded


def decoded_path(path: str) -> str:
    """A path with every segment decoded once (the separators stay where they were)."""
    return "/".join(decoded_segment(segment) for segment in path.split("/"))


def decode_event_path(event: dict[str, Any]) -> None:
    """Decode an HTTP API v2.0 event's ``rawPath`` and ``pathParameters`` in place, once."""
    if isinstance(event.get("rawPath"), str):
        event["rawPath"] = decoded_path(event["rawPath"])
    parameters = event.get("pathParameters")
    if isinstance(parameters, dict):
        event["pathParameters"] = {
            name: decoded_segment(value) if isinstance(value, str) else value
            for name, value in parameters.items()
        }
