"""No handler builds an AWS client at import: each builds it on first use (what bench.cold_start assumes).

Every handler is imported in a fresh interpreter, as Lambda imports it, with botocore's client factory
made to fail: a client built at import fails the import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cold_start import FUNCTIONS, handler_environment, handler_names

_IMPORT_WITHOUT_CLIENTS = """
import botocore.session

def refuse(self, service_name, *args, **kwargs):
    raise AssertionError(f"an AWS client ({service_name}) was built at import")

botocore.session.Session.create_client = refuse
import handler
print("imported")
"""


def _run_in_function_folder(name: str, code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter started in the function's folder, as Lambda starts one."""
    return subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code],
        cwd=FUNCTIONS / name,
        env=handler_environment(name, tmp_path / "pycache"),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", handler_names())
def test_a_handler_imports_without_building_an_aws_client(name, tmp_path):
    # Given the function's folder as Lambda's /var/task, its settings set, client construction refused
    answer = _run_in_function_folder(name, _IMPORT_WITHOUT_CLIENTS, tmp_path)
    # Then the import succeeds: no client was built
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert answer.stdout.strip() == "imported"


# Functions that parse no JSON body of their own: pydantic (and the models built on it) stays out of
# their cold start.
_WITHOUT_PYDANTIC = (
    "companion_authorizer",
    "device_authorizer",
    "reorder_decision",
    "report_planner",
    "report_worker",
)
_IMPORT_AND_LIST_PYDANTIC = "import sys\nimport handler\nprint('pydantic' in sys.modules)"


@pytest.mark.parametrize("name", _WITHOUT_PYDANTIC)
def test_functions_that_parse_no_body_do_not_load_pydantic_at_import(name, tmp_path):
    # Given the function's folder as Lambda's /var/task and its settings
    answer = _run_in_function_folder(name, _IMPORT_AND_LIST_PYDANTIC, tmp_path)
    # Then importing the handler left pydantic unloaded
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert answer.stdout.strip() == "False"
