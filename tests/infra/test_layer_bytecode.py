"""Layers ship bytecode for the runtime's Python when an interpreter of that version is at hand."""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import pytest

from layers import bytecode

LOCAL = f"{sys.version_info.major}.{sys.version_info.minor}"
UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, source not checked


def a_package(root: Path) -> Path:
    package = root / "python" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    (package / "mod.py").write_text("def f():\n    return 2\n")
    return root / "python"


@pytest.fixture
def no_interpreters(monkeypatch, tmp_path):
    """Nothing on PATH and no LAMBDA_PYTHON: no interpreter of any version can be found."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv(bytecode.INTERPRETER_VARIABLE, raising=False)


def test_modules_are_compiled_for_the_version_asked_without_a_timestamp_check(tmp_path, monkeypatch):
    # Given a layer folder and an interpreter of the wanted version named by LAMBDA_PYTHON
    folder = a_package(tmp_path)
    monkeypatch.setenv(bytecode.INTERPRETER_VARIABLE, sys.executable)
    # When it is compiled for that version
    used = bytecode.compile_bytecode(folder, LOCAL)
    # Then that interpreter wrote a .pyc for every module, loadable by that version only, hash-checked
    # never (zip archives keep modification times to two seconds)
    assert used == sys.executable
    tag = sys.implementation.cache_tag
    for name in ("__init__", "mod"):
        header = (folder / "pkg" / "__pycache__" / f"{name}.{tag}.pyc").read_bytes()[:8]
        assert header[:4] == importlib.util.MAGIC_NUMBER
        assert struct.unpack("<I", header[4:8])[0] == UNCHECKED_HASH


def test_without_an_interpreter_of_that_version_the_layer_ships_as_source_and_says_so(
    tmp_path, monkeypatch, capsys
):
    # Given LAMBDA_PYTHON naming an interpreter of another version, and no python3.99 anywhere
    folder = a_package(tmp_path)
    monkeypatch.setenv(bytecode.INTERPRETER_VARIABLE, sys.executable)
    # When the folder is compiled for 3.99
    used = bytecode.compile_bytecode(folder, "3.99")
    # Then nothing is written, and the deployer is told why and what it costs
    assert used is None
    assert not list(folder.rglob("*.pyc"))
    note = capsys.readouterr().out
    assert "no Python 3.99 found" in note and "every cold start compiles" in note


def test_an_interpreter_on_path_is_found_by_its_version_name(tmp_path, monkeypatch, no_interpreters):
    # Given pythonX.Y (this interpreter) on PATH and no LAMBDA_PYTHON
    link = tmp_path / "empty-path" / f"python{LOCAL}"
    link.symlink_to(sys.executable)
    # Then it is the one found for X.Y, and nothing is found for another version
    assert bytecode.find_interpreter(LOCAL) == str(link)
    assert bytecode.find_interpreter("3.99") is None


def test_the_core_layer_bundle_holds_drs_core_compiled_for_the_runtime(tmp_path, monkeypatch):
    # Given the core layer's local bundling, as cdk synth runs it (compilation recorded, not run: this
    # machine has no Python 3.14)
    import infra.functions as functions

    compiled = []
    monkeypatch.setattr(functions, "compile_bytecode", lambda *args: compiled.append(args))
    # When it bundles
    assert functions._CoreLayerBundling().try_bundle(str(tmp_path / "out"), image=None) is True
    # Then the layer holds every drs_core module under python/, none of the working tree's bytecode,
    # and that folder was compiled for the runtime's Python
    bundled = tmp_path / "out" / "python"
    source = functions.ROOT / "layers" / "core" / "python"
    expected = sorted(p.relative_to(source) for p in source.rglob("*.py") if "__pycache__" not in p.parts)
    assert sorted(p.relative_to(bundled) for p in bundled.rglob("*.py")) == expected
    assert not list(bundled.rglob("*.pyc")) and not list(bundled.rglob("__pycache__"))
    assert compiled == [(bundled, functions.RUNTIME.name.removeprefix("python"))] == [(bundled, "3.14")]
