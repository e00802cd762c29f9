"""The model catalog (drs_core/catalog.py): its format and checks, the shipped file, the pack arithmetic,
and the sandbox's demo models agreeing with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cold_start import FUNCTIONS, handler_environment
from drs_core.catalog import CATALOG_FILE, CatalogError, load_catalog, model_catalog, packs_of, parse_catalog
from infra.functions import check_model_catalog
from sandbox.demo import PRINTER, WATER_FILTER

GOOD = {
    "models": {
        "AquaPure-WF1": {
            "description": "water filter",
            "slots": {
                "Filter": {
                    "unit": "L",
                    "fullQuantity": 150,
                    "packs": {"B0WFILTER01": 150, "B0WFILTER02": 300},
                }
            },
        }
    }
}


def test_a_catalog_reads_slots_units_full_quantities_and_pack_sizes():
    # Given a catalog with one model, one slot and two products of different pack sizes
    catalog = parse_catalog(GOOD)
    # Then the slot's spec, and the stock a shipment adds in the slot's unit, follow from it
    spec = catalog.slot("AquaPure-WF1", "Filter")
    assert spec is not None and (spec.unit, spec.full_quantity) == ("L", 150)
    assert catalog.shipped_quantity("AquaPure-WF1", "Filter", "B0WFILTER02", 2) == 600
    # And nothing is guessed for an unknown model, slot or ASIN, or a missing ASIN of unequal packs
    assert catalog.slot("Other", "Filter") is None and catalog.slot("AquaPure-WF1", "Cleaner") is None
    assert catalog.shipped_quantity("AquaPure-WF1", "Filter", "B0UNKNOWN1", 1) is None
    assert catalog.shipped_quantity("AquaPure-WF1", "Filter", None, 1) is None
    assert catalog.shipped_quantity(None, "Filter", "B0WFILTER01", 1) is None


def test_an_order_without_asin_uses_the_pack_size_every_product_of_the_slot_shares():
    # Given a slot whose products all hold 150 L
    catalog = parse_catalog(
        {
            "models": {
                "M": {"slots": {"F": {"unit": "L", "fullQuantity": 150, "packs": {"A1": 150, "A2": 150}}}}
            }
        }
    )
    # Then a v1 order, which names no ASIN, still adds 150 L a pack
    assert catalog.shipped_quantity("M", "F", None, 1) == 150


@pytest.mark.parametrize(
    ("quantity", "unit", "packs"),
    [(1.0, "count", 1.0), (3, "Count", 3.0), (150, "L", 1.0), (None, None, 1.0), (2, None, 1.0)],
)
def test_packs_are_the_counted_quantity_else_one(quantity, unit, packs):
    # productInfo "3 count" is three packs; a product described by its contents ("150 L") is one pack
    assert packs_of(quantity, unit) == packs


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([], "catalog: an object"),
        ({"models": {}, "extra": 1}, "unknown field(s) extra"),
        ({"models": {"bad model!": {"slots": {}}}}, "model id"),
        ({"models": {"M": {"slots": {}}}}, "models.M.slots: at least one entry"),
        ({"models": {"M": {"slots": {"F": {"unit": "", "fullQuantity": 1, "packs": {"A": 1}}}}}}, "unit"),
        (
            {"models": {"M": {"slots": {"F": {"unit": "L", "fullQuantity": 0, "packs": {"A": 1}}}}}},
            "fullQuantity",
        ),
        (
            {"models": {"M": {"slots": {"F": {"unit": "L", "fullQuantity": True, "packs": {"A": 1}}}}}},
            "fullQuantity",
        ),
        (
            {"models": {"M": {"slots": {"F": {"unit": "L", "fullQuantity": 1, "packs": {}}}}}},
            "packs: at least one",
        ),
        ({"models": {"M": {"slots": {"F": {"unit": "L", "fullQuantity": 1, "packs": {"A-1": 1}}}}}}, "ASIN"),
        (
            {"models": {"M": {"slots": {"F": {"unit": "L", "fullQuantity": 1, "packs": {"A": -2}}}}}},
            "packs.A",
        ),
        (
            {"models": {"M": {"slots": {"F": {"unit": "L", "fullQuantity": 1, "packs": {"A": 1}, "x": 1}}}}},
            "x",
        ),
    ],
)
def test_a_malformed_catalog_is_refused_naming_where(document, problem):
    with pytest.raises(CatalogError) as raised:
        parse_catalog(document)
    assert problem in str(raised.value)


def test_the_shipped_catalog_is_valid_and_synth_refuses_a_broken_one(tmp_path: Path):
    # Given the catalog the core layer ships, and a broken copy of it
    assert check_model_catalog() == len(load_catalog().models) >= 2
    broken = tmp_path / "model_catalog.json"
    document = json.loads(CATALOG_FILE.read_text())
    document["models"]["AquaPure-WF1"]["slots"]["Filter"]["fullQuantity"] = "lots"
    broken.write_text(json.dumps(document))
    # When synth checks the broken one, Then it stops, naming the field
    with pytest.raises(ValueError, match=r"AquaPure-WF1\.slots\.Filter\.fullQuantity"):
        check_model_catalog(broken)


def test_the_demo_models_agree_with_the_catalog():
    # The simulated devices hold what the backend believes a full slot is, in the same unit, and one
    # pack the customer picks fills the slot
    for model in (WATER_FILTER, PRINTER):
        for slot_id, product in model.slots.items():
            spec = model_catalog().slot(model.model_id, slot_id)
            assert spec is not None, (model.model_id, slot_id)
            assert (spec.unit, spec.full_quantity) == (product.unit, product.quantity)
            assert product.to_json() == {"asin": product.asin, "quantity": 1, "unit": "count"}
            assert (
                model_catalog().shipped_quantity(model.model_id, slot_id, product.asin, 1) == product.quantity
            )


def test_the_usage_path_never_loads_the_catalog(tmp_path: Path):
    # Given the usage function imported as Lambda imports it, and one reading's worth of its domain rules
    code = (
        "import sys, handler\nfrom drs_core.domain import usage\nprint('drs_core.catalog' in sys.modules)\n"
    )
    answer = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code],
        cwd=FUNCTIONS / "usage_ingestion",
        env=handler_environment("usage_ingestion", tmp_path / "pycache"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then the catalog module is not even imported: a slot item carries its unit and full quantity
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert answer.stdout.strip() == "False"
