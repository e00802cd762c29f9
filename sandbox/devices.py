"""``POST /__sandbox/devices``: the sandbox's manufacturing line (docs/api.md §2).

``{"serial", "modelId"}`` → 201 ``{"serial", "modelId", "pairingCode"}``: a device is registered in the
device registry of the local state table with a fresh pairing code, which is answered once and kept
nowhere but in its hash, as ``python -m manufacturing.import_devices`` does for a real stage. A serial
that is registered already → 409; a bad body → 400 (``{"error": {"code", "message"}}``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from drs_core.adapters.device_registry import DeviceRegistry
from drs_core.clock import Clock
from drs_core.domain.pairing import hash_pairing_code, new_pairing_code

from .aws import Resources, SandboxError
from .template import friendly_name

# DRS's rule for serials and model ids (docs/drs.md §5).
_IDENTIFIER = re.compile(r"^[A-Za-z0-9+_-]{1,64}$")
STATE_TABLE = "DataState"


def state_table_name(resources: Resources) -> str:
    """The physical name of the stack's state table."""
    for table in resources.tables.values():
        if friendly_name(table.logical_id) == STATE_TABLE:
            return table.name
    raise SandboxError(f"the stack has no {STATE_TABLE} table")


def registry_of(resources: Resources) -> DeviceRegistry:
    """The device registry in the local state table."""
    return DeviceRegistry(state_table_name(resources), dynamodb=resources.client("dynamodb"))


def provision_device(registry: DeviceRegistry, clock: Clock, body: bytes) -> tuple[int, dict[str, Any]]:
    """One ``POST /__sandbox/devices``: (status, JSON answer)."""
    try:
        request = json.loads(body or b"null")
    except ValueError:
        request = None
    if not isinstance(request, dict) or set(request) != {"serial", "modelId"}:
        return 400, _error("INVALID_REQUEST", 'send exactly {"serial", "modelId"}')
    serial, model_id = request["serial"], request["modelId"]
    if not all(isinstance(v, str) and _IDENTIFIER.match(v) for v in (serial, model_id)):
        return 400, _error("INVALID_REQUEST", "serial and modelId: 1-64 of A-Z a-z 0-9 + _ -")
    code = new_pairing_code()
    if not registry.provision(serial, model_id, hash_pairing_code(code), clock.now()):
        return 409, _error("DEVICE_ALREADY_PROVISIONED", f"serial {serial} is registered already")
    return 201, {"serial": serial, "modelId": model_id, "pairingCode": code}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
