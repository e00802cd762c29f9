"""The device models the simulated Amazon knows: each model's slots and the products a customer may pick.

On Amazon, a maker sets up each device model's slots and eligible products in the DRS developer portal;
the consent page (``/ap/oa``) then offers a product per slot. The simulator's models are the ones the
sandbox plays (``make demo``) and the web app's examples use.
"""

from __future__ import annotations

from dataclasses import dataclass

from .records import Product


@dataclass(frozen=True)
class CatalogProduct:
    """A product a customer can pick for a slot, with the title the consent page shows."""

    title: str
    product: Product


@dataclass(frozen=True)
class DeviceModelEntry:
    """A device model: its name and, per slot id, the eligible products (the first one preselected)."""

    model_id: str
    name: str
    slots: dict[str, tuple[CatalogProduct, ...]]


def _choice(title: str, asin: str, quantity: float, unit: str) -> CatalogProduct:
    return CatalogProduct(title, Product(asin, quantity, unit))


DEVICE_MODELS: dict[str, DeviceModelEntry] = {
    entry.model_id: entry
    for entry in (
        DeviceModelEntry(
            "AquaPure-WF1",
            "AquaPure water filter",
            {
                "Filter": (
                    _choice("AquaPure filter cartridge, 150 L", "B0WFILTER01", 150, "L"),
                    _choice("AquaPure filter cartridge XL, 300 L", "B0WFILTER02", 300, "L"),
                ),
                "Cleaner": (_choice("AquaPure descaler, 500 ml", "B0WCLEAN01", 500, "ml"),),
            },
        ),
        DeviceModelEntry(
            "InkJet-P200",
            "InkJet P200 printer",
            {
                "Black": (_choice("P200 black ink, 40 ml", "B0INKBLK01", 40, "ml"),),
                "Color": (_choice("P200 colour ink, 30 ml", "B0INKCLR01", 30, "ml"),),
            },
        ),
    )
}
