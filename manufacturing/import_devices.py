"""Import manufactured devices into a stage's device registry: serial, model and pairing-code hash.

    python -m manufacturing.import_devices --table <StateTableName> devices.csv
    python -m manufacturing.import_devices --table <StateTableName> --codes-out codes.csv serials.csv

The CSV has a header row with ``serial`` and ``modelId``, and ``pairingCode`` when the production line
generated the codes (flashed into the device or printed on its label). Without a ``pairingCode`` column,
codes are generated here and written with their serials to ``--codes-out`` for the label printer: the
backend keeps only their scrypt hashes (``drs_core.domain.pairing``). A serial already in the registry
is left alone and reported (exit status 1) unless ``--replace`` is given. Credentials come from the
usual AWS environment (profile, region); the table is the stack's ``StateTableName`` output.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drs_core.adapters.device_registry import DeviceRegistry
from drs_core.domain.pairing import hash_pairing_code, new_pairing_code, normalized

# DRS's rule for serials and model ids (docs/drs.md §5); a pairing code has at least 8 symbols.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9+_-]{1,64}$")
_CODE = re.compile(r"^[A-Za-z0-9 -]{4,32}$")
MIN_CODE_SYMBOLS = 8


class RowError(ValueError):
    """A row of the CSV that cannot be imported (named by its line)."""


def read_devices(path: Path) -> list[dict[str, str]]:
    """The CSV's rows, checked: serial and modelId always, pairingCode when the column is there."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        if not {"serial", "modelId"} <= columns:
            raise RowError(f"{path}: the header must name serial and modelId (and pairingCode)")
        rows, seen = [], set()
        for line, row in enumerate(reader, start=2):
            serial, model_id = (row.get("serial") or "").strip(), (row.get("modelId") or "").strip()
            if not (_IDENTIFIER.match(serial) and _IDENTIFIER.match(model_id)):
                raise RowError(f"{path}:{line}: serial and modelId must be 1-64 of A-Z a-z 0-9 + _ -")
            if serial in seen:
                raise RowError(f"{path}:{line}: serial {serial} appears twice")
            seen.add(serial)
            entry = {"serial": serial, "modelId": model_id}
            if "pairingCode" in columns:
                code = (row.get("pairingCode") or "").strip()
                if not _CODE.match(code) or len(normalized(code)) < MIN_CODE_SYMBOLS:
                    raise RowError(f"{path}:{line}: pairingCode must be 8 or more letters and digits")
                entry["pairingCode"] = code
            rows.append(entry)
    return rows


def import_devices(
    rows: Sequence[dict[str, str]], registry: DeviceRegistry, *, replace: bool = False
) -> tuple[list[dict[str, str]], list[str]]:
    """Register ``rows`` (codes generated where absent): (the rows with their codes, serials skipped
    because they were registered already)."""
    now = datetime.now(UTC)
    imported, skipped = [], []
    for row in rows:
        code = row.get("pairingCode") or new_pairing_code()
        if registry.provision(row["serial"], row["modelId"], hash_pairing_code(code), now, replace=replace):
            imported.append({**row, "pairingCode": code})
        else:
            skipped.append(row["serial"])
    return imported, skipped


def main(argv: Sequence[str] | None = None, *, dynamodb: Any = None) -> int:
    """The command line; ``dynamodb`` is a low-level client to use instead of the environment's."""
    parser = argparse.ArgumentParser(
        prog="python -m manufacturing.import_devices", description=__doc__.split("\n")[0]
    )
    parser.add_argument("csv", type=Path, help="serial,modelId[,pairingCode] with a header row")
    parser.add_argument("--table", required=True, help="the stack's StateTableName")
    parser.add_argument(
        "--codes-out", type=Path, help="where generated codes go (serial,modelId,pairingCode)"
    )
    parser.add_argument("--replace", action="store_true", help="re-register serials already in the registry")
    args = parser.parse_args(argv)
    try:
        rows = read_devices(args.csv)
    except RowError as bad:
        print(bad, file=sys.stderr)
        return 2
    generating = any("pairingCode" not in row for row in rows)
    if generating and args.codes_out is None:
        print("no pairingCode column: give --codes-out for the generated codes", file=sys.stderr)
        return 2
    imported, skipped = import_devices(
        rows, DeviceRegistry(args.table, dynamodb=dynamodb), replace=args.replace
    )
    if generating and args.codes_out is not None:
        with args.codes_out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["serial", "modelId", "pairingCode"])
            writer.writeheader()
            writer.writerows(imported)
    print(f"imported {len(imported)} device(s); {len(skipped)} already registered")
    for serial in skipped:
        print(f"already registered (use --replace to re-register): {serial}", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
