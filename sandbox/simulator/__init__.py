"""A faithful, strict local stand-in for Amazon's DRS, Login with Amazon and drs-web settings page.

``SimulatorServer`` serves it over loopback HTTP; ``Simulator`` is its in-memory state (also usable
in-process). Contract: ``docs/api.md`` §3 and ``docs/drs.md``.

The exports load lazily, so ``python -m sandbox.simulator`` can make ``drs_core`` importable first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import HttpPublisher, SimulatorServer
    from .state import Simulator

__all__ = ["HttpPublisher", "Simulator", "SimulatorServer"]


def __getattr__(name: str) -> Any:
    if name in ("HttpPublisher", "SimulatorServer"):
        from . import server

        return getattr(server, name)
    if name == "Simulator":
        from .state import Simulator

        return Simulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
