"""``dependencies.reset`` forgets every adapter it caches: the sandbox and the tests rebuild them from
another environment (a stale one pointed the report store at a table of an earlier run)."""

from __future__ import annotations

import inspect

from drs_core import dependencies


def test_reset_clears_every_cached_factory() -> None:
    cached = {
        name
        for name, value in inspect.getmembers(dependencies)
        if callable(value) and hasattr(value, "cache_clear") and value.__module__ == dependencies.__name__
    }
    assert cached, "no cached factory found"
    cleared: set[str] = set()
    originals = {name: getattr(dependencies, name).cache_clear for name in cached}
    try:
        for name in cached:
            factory = getattr(dependencies, name)
            factory.cache_clear = lambda name=name: cleared.add(name)  # type: ignore[method-assign]
        dependencies.reset()
    finally:
        for name, original in originals.items():
            getattr(dependencies, name).cache_clear = original  # type: ignore[method-assign]
    assert cleared == cached
