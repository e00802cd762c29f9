"""The daily demand estimate of a slot on its item, written with the usage state it changes.

The estimate (``domain.estimation.DemandEstimate``: the daily-use history and its marks, the learnt
lead time) lives on the slot item next to the usage attributes. The daily visit writes it together with
the planned reorder point and the reorder fields recomputed from it, in one write guarded by the item's
``version`` (the usage path's own guard), so a reading in between makes the visit read and try again.

Every hot-path write is billed by the slot item's size (one write unit per KB), so the estimate is kept
small: the daily-use history is one string (base64 of a float32 scale and an unsigned 16-bit share of
it per day: 80 characters for four weeks, to a 65,535th of the largest day; a string rather than a
binary attribute, which stream records and their filters would carry base64-encoded anyway), and the
order learnt from is a short fingerprint of its id (``services.estimation``).
"""

from __future__ import annotations

import base64
import struct

from drs_core.adapters.items import (
    Attr,
    AttributeValue,
    Item,
    Refused,
    get_float,
    get_str,
    get_time,
    opt_num_av,
    opt_str_av,
    str_av,
    time_av,
)
from drs_core.adapters.usage_store import UsageStore, changed_attributes
from drs_core.domain import usage
from drs_core.domain.estimation import DemandEstimate


def pack_history(history: tuple[float, ...]) -> bytes:
    """The daily-use history as bytes: a float32 scale (the largest day), then each day's share of it."""
    scale = max((max(history, default=0.0), 0.0))
    shares = [round(min(max(use, 0.0) / scale, 1.0) * 0xFFFF) if scale > 0 else 0 for use in history]
    return struct.pack(f"<f{len(shares)}H", scale, *shares)


def unpack_history(packed: bytes) -> tuple[float, ...]:
    """The history ``pack_history`` packed (to a 65,535th of its largest day)."""
    count = (len(packed) - 4) // 2
    scale, *shares = struct.unpack(f"<f{count}H", packed[: 4 + 2 * count])
    return tuple(scale * share / 0xFFFF for share in shares)


def estimate_from_item(item: Item) -> DemandEstimate:
    """The slot item's demand estimate (an empty one before the first visit)."""
    packed = get_str(item, Attr.USAGE_HISTORY)
    return DemandEstimate(
        history=unpack_history(base64.b64decode(packed)) if packed else (),
        observed_at=get_time(item, Attr.USAGE_OBSERVED_AT),
        consumed_mark=get_float(item, Attr.USAGE_CONSUMED_MARK),
        lead_time_days=get_float(item, Attr.LEARNT_LEAD_TIME),
        lead_time_spread=get_float(item, Attr.LEARNT_LEAD_SPREAD),
        lead_time_order=get_str(item, Attr.LEARNT_LEAD_ORDER),
        run_variance=get_float(item, Attr.USAGE_RUN_VARIANCE),
    )


def estimate_attributes(estimate: DemandEstimate) -> dict[str, AttributeValue | None]:
    """The estimate's attributes (None: absent)."""
    return {
        Attr.USAGE_HISTORY: str_av(base64.b64encode(pack_history(estimate.history)).decode())
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
        return self._write_exact(serial, slot_id, item, old, new, extra=changes)
