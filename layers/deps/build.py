"""Build the dependency layer without Docker: manylinux wheels for the Lambda architecture.

    python -m layers.deps.build [--arch arm64|x86_64] [--python 3.14]

Installs ``requirements.txt`` (boto3/botocore are left to the runtime) into ``layers/deps/python``,
then compiles it for that Python when an interpreter of that version is at hand (``layers.bytecode``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from layers.bytecode import RUNTIME_PYTHON, compile_bytecode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}


def build(arch: str = "arm64", python: str = RUNTIME_PYTHON, target: Path | None = None) -> Path:
    """Install the pinned runtime requirements for ``arch``/``python`` into ``target`` (a layer's python/)."""
    target = target or HERE / "python"
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(  # noqa: S603 - fixed argv, no shell, our own requirements file
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--requirement", str(ROOT / "requirements.txt"),
            "--platform", PLATFORMS[arch], "--implementation", "cp", "--python-version", python,
            "--only-binary=:all:", "--target", str(target),
        ],
        check=True,
    )  # fmt: skip
    # pip compiled with this machine's Python; only the runtime's own version can load bytecode.
    for cache in target.rglob("__pycache__"):
        shutil.rmtree(cache)
    compile_bytecode(target, python)
    return target


def parser() -> argparse.ArgumentParser:
    """The command line: ``--arch`` and ``--python`` default to the Lambda runtime's."""
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--arch", choices=sorted(PLATFORMS), default="arm64")
    options.add_argument("--python", default=RUNTIME_PYTHON)
    return options


if __name__ == "__main__":
    args = parser().parse_args()
    print(build(args.arch, args.python))
