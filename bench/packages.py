"""Lambda package sizes: each function's code asset, the core layer and the dependency layer.

Zipped the way the CDK assets are (``__pycache__`` and ``.pyc`` left out; a layer's files under
``python/``), deflated in memory. The dependency layer is built as ``cdk synth`` builds it
(``layers.deps.build.build``: manylinux wheels for the template's runtime and architecture), into
``.sandbox-cache/`` keyed by the requirements and the target, so repeated runs reuse it. The baseline is
Lambda's own quota: 250 MB unzipped for a function's code and all its layers together.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench.table import print_table

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".sandbox-cache"
MB = 1024 * 1024
UNZIPPED_QUOTA_MB = 250.0  # Lambda: function code + all its layers, unzipped
ZIPPED_UPLOAD_QUOTA_MB = 50.0  # Lambda: a zip uploaded directly
_SKIPPED = ("__pycache__",)


@dataclass(frozen=True)
class Package:
    name: str
    zipped_bytes: int
    unzipped_bytes: int
    files: int

    @property
    def zipped_mb(self) -> float:
        return self.zipped_bytes / MB

    @property
    def unzipped_mb(self) -> float:
        return self.unzipped_bytes / MB


@dataclass(frozen=True)
class Packages:
    functions: tuple[Package, ...]
    core: Package
    deps: Package
    runtime: str
    architecture: str

    @property
    def largest_total_unzipped_mb(self) -> float:
        """The largest function with both layers, unzipped: what counts against the 250 MB quota."""
        largest = max(self.functions, key=lambda p: p.unzipped_bytes)
        return (largest.unzipped_bytes + self.core.unzipped_bytes + self.deps.unzipped_bytes) / MB


def zip_size(folder: Path, name: str, *, prefix: str = "") -> Package:
    """The deflated zip of ``folder`` (what the asset uploads), built in memory."""
    buffer = io.BytesIO()
    unzipped = files = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix == ".pyc" or any(p in _SKIPPED for p in path.parts):
                continue
            archive.write(path, prefix + str(path.relative_to(folder)))
            unzipped += path.stat().st_size
            files += 1
    return Package(name, len(buffer.getvalue()), unzipped, files)


def _runtime() -> tuple[str, str]:
    """The functions' runtime ("3.14") and architecture ("arm64"), read from the synthesized template."""
    from sandbox.template import synthesized_template

    for resource in synthesized_template()["Resources"].values():
        if resource.get("Type") == "AWS::Lambda::Function":
            props = resource["Properties"]
            if str(props.get("Runtime", "")).startswith("python"):
                return props["Runtime"].removeprefix("python"), (props.get("Architectures") or ["x86_64"])[0]
    raise RuntimeError("no Python function in the template")


def deps_layer(python: str, arch: str) -> Path:
    """The dependency layer's folder (``python/`` inside), built once per requirements and target."""
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes() + f"{python}/{arch}".encode())
    folder = CACHE / f"deps-layer-{digest.hexdigest()[:16]}"
    if (folder / ".complete").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    # A subprocess: pip's index warnings go to the captured stderr, not into the tables.
    code = (
        "import sys; from pathlib import Path; from layers.deps.build import build; "
        "build(arch=sys.argv[1], python=sys.argv[2], target=Path(sys.argv[3]))"
    )
    subprocess.run(  # noqa: S603 - our interpreter, our build function
        [sys.executable, "-c", code, arch, python, str(folder / "python")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=True,
    )
    (folder / ".complete").touch()
    return folder


@cache
def measure() -> Packages:
    """Zip every function, the core layer and the (cached) dependency layer build."""
    python, arch = _runtime()
    functions = tuple(
        zip_size(path.parent, path.parent.name) for path in sorted((ROOT / "functions").glob("*/handler.py"))
    )
    core = zip_size(ROOT / "layers" / "core", "layer: core (drs_core)")
    deps = zip_size(deps_layer(python, arch), f"layer: deps (requirements.txt, python{python} {arch})")
    return Packages(functions, core, deps, f"python{python}", arch)


def run() -> None:
    result = measure()
    rows: list[list[object]] = [
        [f"function: {p.name}", p.files, p.zipped_bytes / 1024, p.unzipped_bytes / 1024]
        for p in result.functions
    ]
    rows += [
        [p.name, p.files, p.zipped_bytes / 1024, p.unzipped_bytes / 1024] for p in (result.core, result.deps)
    ]
    print_table(
        f"Lambda packages ({result.runtime}, {result.architecture}; quota: {UNZIPPED_QUOTA_MB:.0f} MB "
        f"unzipped per function with its layers, {ZIPPED_UPLOAD_QUOTA_MB:.0f} MB per uploaded zip)",
        ["package", "files", "zipped KB", "unzipped KB"],
        rows,
    )
    print(
        f"largest function + both layers, unzipped: {result.largest_total_unzipped_mb:.1f} MB "
        f"of {UNZIPPED_QUOTA_MB:.0f} MB"
    )
