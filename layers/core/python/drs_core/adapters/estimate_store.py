"""The daily demand estimate of a slot on its item, written with the usage state it changes.

The estimate (``domain.estimation.DemandEstimate``: the daily-use history and its marks, the learnt
lead time) lives on the slot item next to the usage attributes. The daily visit writes it together with
the planned reorder point and the reorder fields recomputed from it, in one write guarded by the item's
``version`` (the usage path's own guard), so a reading in between makes the visit read and try again.
"""

from __future__ import annotations

from decimal import Decimal

from drs_core.adapters.items import (
    Attr,
    AttributeValue,
    Item,
    Refused,
    get_float,
    get_str,
    get_time,
    num_av,
    opt_num_av,
    opt_str_av,
    time_av,
)
from drs_core.adapters.usage_store import UsageStore, changed_attributes
from drs_core.domain import usage
from drs_core.domain.estimation import DemandEstimate


def estimate_from_item(item: Item) -> DemandEstimate:
    """The slot item's demand estimate (an empty one before the first visit)."""
    history = item.get(Attr.USAGE_HISTORY, {}).get("L", [])
    return DemandEstimate(
        history=tuple(float(Decimal(value["N"])) for value in history),
        observed_at=get_time(item, Attr.USAGE_OBSERVED_AT),
        consumed_mark=get_float(item, Attr.USAGE_CONSUMED_MARK),
        lead_time_days=get_float(item, Attr.LEARNT_LEAD_TIME),
        lead_time_spread=get_float(item, Attr.LEARNT_LEAD_SPREAD),
        lead_time_order=get_str(item, Attr.LEARNT_LEAD_ORDER),
        run_variance=get_float(item, Attr.USAGE_RUN_VARIANCE),
    )


def estimate_attributes(estimate: DemandEstimate) -> dict[str, AttributeValue | None]:
    """The estimate's attributes (None: absent). Daily use is rounded to 6 significant digits."""
    return {
        Attr.USAGE_HISTORY: {"L": [num_av(float(f"{value:.6g}")) for value in estimate.history]}
        if estimate.history
        else None,
        Attr.USAGE_OBSERVED_AT: time_av(estimate.observed_at),
        Attr.USAGE_CONSUMED_MARK: opt_num_av(estimate.consumed_mark),
        Attr.LEARNT_LEAD_TIME: opt_num_av(estimate.lead_time_days),
        Attr.LEARNT_LEAD_SPREAD: opt_num_av(estimate.lead_time_spread),
        Attr.LEARNT_LEAD_ORDER: opt_str_av(estimate.lead_time_order),
        Attr.USAGE_RUN_VARIANCE: opt_num_av(
            float(f"{estimate.run_variance:.6g}") if estimate.run_variance is not None else None
        ),
    }


class EstimateStore(UsageStore):
    """``UsageStore`` plus the guarded write of a slot's estimate with its new usage state."""

    @classmethod
    def sharing(cls, store: UsageStore) -> EstimateStore:
        """An estimate store on ``store``'s table, sharing its DynamoDB client (built lazily)."""
        return cls(store._table_name, dynamodb=store._client)

    def write_estimate(
        self,
        serial: str,
        slot_id: str,
        item: Item,
        old: usage.UsageState,
        new: usage.UsageState,
        estimate: DemandEstimate,
    ) -> Item | Refused | None:
        """Write ``new`` and ``estimate`` over ``item`` if the slot is still at ``old.version``.

        The new item, ``Refused`` (with the current item) if the slot moved, None if nothing changed
        but the version.
        """
        before = estimate_attributes(estimate_from_item(item))
        after = estimate_attributes(estimate)
        changes = {name: value for name, value in after.items() if value != before[name]}
        usage_changes = set(changed_attributes(old, new))
        if not changes and old.reorder_fields_valid and usage_changes <= {Attr.VERSION, Attr.REORDER_VERSION}:
            return None  # only the version would move: nothing to write (a repeated visit, say)
        return self._write_exact(serial, slot_id, item, old, new, changes)
