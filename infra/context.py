"""Reading and checking context values (``-c key=value`` or cdk.json): a bad value fails synth with a
message naming the key, before anything reaches CloudFormation."""

from __future__ import annotations

from constructs import Construct


def whole_number(scope: Construct, key: str, *, default: int, low: int, high: int) -> int:
    """Context ``key`` as a whole number from ``low`` to ``high``; ``default`` when it is not set.

    ``-c key=60`` arrives as text and cdk.json gives a number; 0 is a value like any other.
    """
    raw = scope.node.try_get_context(key)
    if raw is None:
        return default
    text = str(raw).strip()
    if isinstance(raw, bool) or not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"context {key}={raw!r}: expected a whole number from {low} to {high}")
    return int(text)


def flag(scope: Construct, key: str) -> bool:
    """Context ``key`` as ``true`` or ``false`` (default false)."""
    raw = scope.node.try_get_context(key)
    text = str(raw).strip().lower() if raw is not None else "false"
    if text not in ("true", "false"):
        raise ValueError(f"context {key}={raw!r}: expected true or false")
    return text == "true"
