"""The maker's model catalog: per device model its slots, each slot's unit and full quantity, and per
ASIN how much of the slot's unit one pack holds.

DRS's ``productInfo`` describes what Amazon sells (a pack: ``{"quantity": 1.0, "unit": "count"}``); a
slot's levels are in the device's own unit (ml, L, pages, count), agreed per model between the maker's
firmware and this backend. The catalog is that agreement. It is configuration deployed with the stack:
``model_catalog.json`` next to this module, bundled in the core layer (validated at synth by
``infra/stack.py``), read once per process by the functions that need it (notifications, companion API)
and never by the usage path: a slot item stores its full quantity and unit, so no reading reads this.

File format (JSON)::

    {"models": {"<modelId>": {"slots": {"<slotId>": {
        "unit": "L", "fullQuantity": 150, "packs": {"<ASIN>": 150}}}}}}

What the backend does with it (docs/architecture.md):

- a subscription (linking, ``SubscriptionChanged``) sets the slot's unit and full quantity from its
  model's slot, never from ``productInfo``;
- ``ItemShipped`` adds packs times the ASIN's pack quantity to stock on hand, packs being ``productInfo``'s
  quantity when its unit is ``count`` (how DRS describes a pack) and 1 otherwise; a test order adds
  nothing (test orders do not ship);
- an unknown model, slot or ASIN is never guessed at: the slot keeps what it has (a reading's
  ``originalQuantity`` sets the full quantity), no stock is added, and a warning with the metric
  ``CatalogMiss`` says which lookup failed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).with_name("model_catalog.json")
# Model and slot ids: DRS's identifier shape (docs/drs.md §5); ASINs: letters and digits.
_IDENTIFIER = re.compile(r"[A-Za-z0-9+_-]{1,64}")
_ASIN = re.compile(r"[A-Za-z0-9]{1,20}")
# productInfo's unit for a number of packs (DRS's samples: "1.0 count").
PACK_UNIT = "count"
# A model, slot or ASIN the catalog does not know: nothing is guessed, this metric counts it.
CATALOG_MISS_METRIC = "CatalogMiss"


class CatalogError(ValueError):
    """The catalog file is not valid; the message names the offending path."""


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """One slot of a model: its unit, its full quantity in that unit, and each ASIN's pack quantity."""

    unit: str
    full_quantity: float
    packs: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelCatalog:
    """Every model the maker deploys: ``models[modelId][slotId]``."""

    models: Mapping[str, Mapping[str, SlotSpec]] = field(default_factory=dict)

    def slot(self, model_id: str | None, slot_id: str) -> SlotSpec | None:
        """The slot's spec, or None for an unknown model or slot."""
        return self.models.get(model_id or "", {}).get(slot_id)

    def shipped_quantity(
        self, model_id: str | None, slot_id: str, asin: str | None, packs: float
    ) -> float | None:
        """``packs`` packs of ``asin`` in the slot's unit; None when the model, slot or ASIN is unknown.

        With no ASIN at all (a v1 order of a slot whose product v1 never named), the pack quantity is
        still known when every product the slot takes has the same one."""
        spec = self.slot(model_id, slot_id)
        if spec is None:
            return None
        if asin is None:
            sizes = set(spec.packs.values())
            pack = sizes.pop() if len(sizes) == 1 else None
        else:
            pack = spec.packs.get(asin)
        return None if pack is None else packs * pack


def packs_of(quantity: float | None, unit: str | None) -> float:
    """How many packs an order's ``productInfo`` names: its quantity when counted, else one pack."""
    if quantity is not None and (unit or "").strip().lower() == PACK_UNIT:
        return quantity
    return 1.0


def parse_catalog(document: Any) -> ModelCatalog:
    """Validate a catalog document (the parsed JSON); ``CatalogError`` names the first problem."""
    models = _object(document, "catalog", {"models"}).get("models")
    where = "models"
    parsed: dict[str, dict[str, SlotSpec]] = {}
    for model_id, model in _object(models, where).items():
        _identifier(model_id, f"{where}: model id")
        slots = _object(model, f"{where}.{model_id}", {"slots", "description"}).get("slots")
        parsed[model_id] = {}
        for slot_id, spec in _object(slots, f"{where}.{model_id}.slots", nonempty=True).items():
            path = f"{where}.{model_id}.slots.{slot_id}"
            _identifier(slot_id, f"{path}: slot id")
            parsed[model_id][slot_id] = _slot(spec, path)
    return ModelCatalog(parsed)


def load_catalog(path: Path = CATALOG_FILE) -> ModelCatalog:
    """Read and validate the catalog file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CatalogError(f"{path.name}: {err}") from None
    return parse_catalog(document)


@lru_cache(maxsize=1)
def model_catalog() -> ModelCatalog:
    """The deployed catalog, read once per process (on first use: functions that never look a model
    up never read it)."""
    return load_catalog()


def slot_spec(model_id: str | None, slot_id: str) -> SlotSpec | None:
    """The deployed catalog's spec of a model's slot; None, with a warning and ``CatalogMiss``, when it
    does not know them: the slot then keeps its full quantity and unit (a reading's
    ``originalQuantity`` sets them)."""
    spec = model_catalog().slot(model_id, slot_id)
    if spec is None:
        from aws_lambda_powertools.metrics import MetricUnit

        from drs_core.observability import logger, metrics

        logger.warning(
            "slot unknown to the model catalog: full quantity and unit left as they are",
            extra={"modelId": model_id, "slotId": slot_id},
        )
        metrics.add_metric(name=CATALOG_MISS_METRIC, unit=MetricUnit.Count, value=1)
    return spec


def _slot(spec: Any, path: str) -> SlotSpec:
    data = _object(spec, path, {"unit", "fullQuantity", "packs"})
    unit = data.get("unit")
    if not isinstance(unit, str) or not unit.strip():
        raise CatalogError(f"{path}.unit: a non-empty string")
    full = _positive(data.get("fullQuantity"), f"{path}.fullQuantity")
    packs = {
        _asin(asin, f"{path}.packs"): _positive(amount, f"{path}.packs.{asin}")
        for asin, amount in _object(data.get("packs"), f"{path}.packs", nonempty=True).items()
    }
    return SlotSpec(unit=unit.strip(), full_quantity=full, packs=packs)


def _object(
    value: Any, path: str, allowed: set[str] | None = None, *, nonempty: bool = False
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CatalogError(f"{path}: an object")
    if nonempty and not value:
        raise CatalogError(f"{path}: at least one entry")
    unknown = sorted(set(value) - allowed) if allowed is not None else []
    if unknown:
        raise CatalogError(f"{path}: unknown field(s) {', '.join(unknown)}")
    return value


def _positive(value: Any, path: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise CatalogError(f"{path}: a number greater than 0")
    return float(value)


def _identifier(value: str, path: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise CatalogError(f"{path} {value!r}: 1-64 of A-Z a-z 0-9 + _ -")
    return value


def _asin(value: str, path: str) -> str:
    if not _ASIN.fullmatch(value):
        raise CatalogError(f"{path}: ASIN {value!r}: 1-20 letters and digits")
    return value
