"""What a shipment and a subscription mean in a slot's own unit (``drs_core.catalog``).

Shared by the notification function (ItemShipped, SubscriptionChanged) and by the daily visit and the
reorder function (``order_truth``: a shipment learnt from ``getOrderInfo``, a ``subscriptionInfo``
re-read). Kept apart from ``services.notifications`` so that the reorder function does not load the
notification models (pydantic) at cold start.
"""

from __future__ import annotations

from datetime import datetime

from aws_lambda_powertools.metrics import MetricUnit

from drs_core.adapters.notification_store import NotificationStore, ProductChoice
from drs_core.catalog import CATALOG_MISS_METRIC, model_catalog, slot_spec
from drs_core.domain.models import Slot
from drs_core.observability import logger, metrics


def shipped_stock(
    model_id: str | None, slot: Slot, asin: str | None, packs: float, *, is_test: bool
) -> float:
    """What a shipment adds to the slot's stock on hand, in the slot's unit (``drs_core.catalog``):
    ``packs`` times the ASIN's pack quantity; nothing for a test order (they do not ship), and nothing,
    with a warning and ``CatalogMiss``, when the catalog does not know the model, slot or ASIN. Used by
    ItemShipped and by a shipment learnt from ``getOrderInfo`` (``order_truth``)."""
    if is_test:
        return 0.0
    quantity = model_catalog().shipped_quantity(model_id, slot.slot_id, asin, packs)
    if quantity is None:
        logger.warning(
            "shipped quantity unknown to the model catalog: no stock added",
            extra={"modelId": model_id, "slotId": slot.slot_id, "asin": asin},
        )
        metrics.add_metric(name=CATALOG_MISS_METRIC, unit=MetricUnit.Count, value=1)
        return 0.0
    return quantity


def apply_catalog_subscription(
    store: NotificationStore,
    serial: str,
    slot_id: str,
    *,
    model_id: str | None,
    subscribed: bool,
    asin: str | None,
    product_known: bool,
    at: datetime,
) -> Slot | None:
    """Apply a slot's subscription (from SubscriptionChanged or a ``subscriptionInfo`` re-read): the
    product's ASIN, and the slot's unit and full quantity from the model catalog. productInfo describes a
    pack, not the slot: its quantity and unit never become the slot's."""
    spec = slot_spec(model_id, slot_id)
    return store.apply_subscription(
        serial,
        slot_id,
        subscribed=subscribed,
        product=ProductChoice(asin, None, None) if asin else None,
        product_known=product_known,
        at=at,
        full_quantity=spec.full_quantity if spec else None,
        unit=spec.unit if spec else None,
    )
