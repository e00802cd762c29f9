"""Ship the layers with bytecode compiled for the Lambda runtime's Python, when one is at hand.

Lambda mounts layers read-only under ``/opt``: Python cannot write ``__pycache__`` there, so a layer
without ``.pyc`` files is compiled again in memory on every cold start. Measured (``make bench``, the
"no .pyc" column of the cold-start table): 0.41-1.07 s per handler import without bytecode against
0.073-0.21 s with it (the run in README), the largest cold-start cost there is.

A ``.pyc`` file only loads on the Python minor version that wrote it, so it must be compiled by the
runtime's own version (3.14 for ``infra/functions.py`` RUNTIME). ``compile_bytecode`` looks for that
interpreter (``LAMBDA_PYTHON``, else ``python3.14`` on PATH); without one the layer ships as source and
says so. The files are written with ``--invalidation-mode unchecked-hash``: zip archives keep
modification times to two seconds, and a timestamp check could then reject every file at import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

INTERPRETER_VARIABLE = "LAMBDA_PYTHON"
# The Lambda runtime's Python: infra/functions.py deploys ``python{RUNTIME_PYTHON}``, and the dependency
# layer's wheels and every layer's bytecode are built for it (layers/deps/build.py's default).
RUNTIME_PYTHON = "3.14"


def find_interpreter(version: str) -> str | None:
    """An interpreter of Python ``version`` ("3.14"): ``$LAMBDA_PYTHON`` if it is one, else ``pythonX.Y``."""
    for candidate in (os.environ.get(INTERPRETER_VARIABLE), shutil.which(f"python{version}")):
        if candidate and _version_of(candidate) == version:
            return candidate
    return None


def compile_bytecode(folder: Path, version: str) -> str | None:
    """Compile every module under ``folder`` for Python ``version``; the interpreter used, or ``None``."""
    interpreter = find_interpreter(version)
    if interpreter is None:
        print(  # the deployer's terminal: bundling runs inside ``cdk synth`` / ``cdk deploy``
            f"note: no Python {version} found (set {INTERPRETER_VARIABLE} or put python{version} on PATH): "
            f"{folder} ships without bytecode, and every cold start compiles what it imports from it"
        )
        return None
    subprocess.run(  # noqa: S603 - an interpreter of the exact version, fixed arguments, no shell
        [interpreter, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
         str(folder)],
        check=True,
    )  # fmt: skip
    return interpreter


def _version_of(interpreter: str) -> str | None:
    try:
        answer = subprocess.run(  # noqa: S603 - asks an interpreter its version, no shell
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return answer.stdout.strip()
