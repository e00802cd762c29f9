"""The device registry: the serials the maker manufactured, each with its model and the hash of its
pairing code (``drs_core.domain.pairing``), and the failed pairing attempts against it.

One item per serial in the device's own partition of the state table (``sk = REGISTRY``), written by
the manufacturing import (``python -m manufacturing.import_devices``) or the sandbox's
``POST /__sandbox/devices``, read and counted by linking. No index holds it; nothing else reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from drs_core import schema
from drs_core.adapters.items import (
    Item,
    Refused,
    TableGateway,
    UpdateBuilder,
    get_int,
    get_str,
    get_time,
    key_item,
    num_av,
    str_av,
    time_av,
)
from drs_core.observability import logger

REGISTRY_SK = "REGISTRY"
MODEL_ID = "modelId"
CODE_HASH = "pairingCodeHash"
FAILED_ATTEMPTS = "failedPairingAttempts"
LOCKED_UNTIL = "pairingLockedUntil"
PROVISIONED_AT = "provisionedAt"

# Failed attempts in a row that lock a serial, and for how long: 5 guesses per 15 minutes is ~480 a
# day, so a 50-bit code holds for millions of years of guessing.
MAX_FAILED_ATTEMPTS = 5
LOCK_PERIOD = timedelta(minutes=15)


def registry_key(serial: str) -> dict[str, str]:
    """Primary key of a serial's registry item."""
    return {schema.STATE_PK: schema.device_pk(serial), schema.STATE_SK: REGISTRY_SK}


@dataclass(frozen=True)
class RegisteredDevice:
    """A manufactured device as the registry knows it."""

    serial: str
    model_id: str
    code_hash: str = field(repr=False)
    failed_attempts: int = 0
    locked_until: datetime | None = None


class DeviceRegistry(TableGateway):
    """Registry items of the state table."""

    def get(self, serial: str) -> RegisteredDevice | None:
        """The registered device, or None for a serial that was never manufactured (consistent read)."""
        answer = self._dynamodb.get_item(
            TableName=self._table_name, Key=key_item(registry_key(serial)), ConsistentRead=True
        )
        item = answer.get("Item")
        return _registered(serial, item) if item else None

    def provision(
        self, serial: str, model_id: str, code_hash: str, now: datetime, *, replace: bool = False
    ) -> bool:
        """Register a manufactured device; False if the serial is registered already (unless ``replace``,
        which also clears its failed attempts)."""
        update = UpdateBuilder()
        update.set(MODEL_ID, str_av(model_id))
        update.set(CODE_HASH, str_av(code_hash))
        update.set(PROVISIONED_AT, time_av(now))
        update.remove(FAILED_ATTEMPTS)
        update.remove(LOCKED_UNTIL)
        if replace:
            self.update(registry_key(serial), update)
            return True
        condition = f"attribute_not_exists({update.name(schema.STATE_PK)})"
        return not isinstance(self.conditional_update(registry_key(serial), update, condition), Refused)

    def record_failure(self, serial: str, now: datetime) -> bool:
        """Count a failed pairing attempt; the attempt that reaches ``MAX_FAILED_ATTEMPTS`` locks the
        serial for ``LOCK_PERIOD`` and starts the count over. True if this attempt locked it."""
        update = UpdateBuilder()
        update.add(FAILED_ATTEMPTS, num_av(1))
        condition = f"attribute_exists({update.name(schema.STATE_PK)})"
        item = self.conditional_update(registry_key(serial), update, condition)
        if isinstance(item, Refused) or get_int(item, FAILED_ATTEMPTS, 0) < MAX_FAILED_ATTEMPTS:
            return False
        lock = UpdateBuilder()
        lock.set(LOCKED_UNTIL, time_av(now + LOCK_PERIOD))
        lock.remove(FAILED_ATTEMPTS)
        self.update(registry_key(serial), lock)
        logger.warning("pairing locked after repeated wrong codes", extra={"serial": serial})
        return True

    def clear_failures(self, serial: str) -> None:
        """Start the failed-attempt count over (after a right code)."""
        update = UpdateBuilder()
        update.remove(FAILED_ATTEMPTS)
        update.remove(LOCKED_UNTIL)
        self.update(registry_key(serial), update)


def _registered(serial: str, item: Item) -> RegisteredDevice:
    return RegisteredDevice(
        serial=serial,
        model_id=get_str(item, MODEL_ID) or "",
        code_hash=get_str(item, CODE_HASH) or "",
        failed_attempts=get_int(item, FAILED_ATTEMPTS, 0),
        locked_until=get_time(item, LOCKED_UNTIL),
    )
