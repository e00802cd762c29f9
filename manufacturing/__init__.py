"""Tools the device maker runs at manufacturing (not deployed). Run from a checkout: ``drs_core`` is
found in ``layers/core/python`` without PYTHONPATH."""

import sys
from pathlib import Path

_CORE = str(Path(__file__).resolve().parents[1] / "layers" / "core" / "python")
if _CORE not in sys.path:
    sys.path.insert(0, _CORE)
