"""The reporting concern's view of the state table: the report index, and each device's report item.

The planner pages through one bucket of the sparse ``report`` GSI (keys and status only). The worker
owns one item per device partition, ``sk = REPORT``: a lease (who is reporting the device right now,
until when) and what was reported (``deviceReportDay``, and per slot the day and the last use it
carried). Keeping these off the device and slot items means reporting never rewrites the device item
(whose every write is also a write to the ``owner`` index, projected ALL) nor a slot item (whose stream
records the reorder function filters), and never races with the writers of those items.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drs_core import schema
from drs_core.adapters.items import (
    Attr,
    Item,
    Refused,
    TableGateway,
    UpdateBuilder,
    device_from_item,
    get_str,
    get_time,
    slot_from_item,
    str_av,
    time_av,
)
from drs_core.clock import to_iso
from drs_core.domain.models import Device, DeviceStatus, Slot
from drs_core.domain.reporting import ReportMarks, SlotReportMark
from drs_core.observability import logger

# Attributes of the report item.
LEASE_OWNER = "leaseOwner"
LEASE_UNTIL = "leaseUntil"
DEVICE_REPORT_DAY = "deviceReportDay"
DEVICE_REPORTED_AT = "deviceReportedAt"
SLOT_REPORTS = "slotReports"  # map: slot id → {day, useAt, at}
SUBSCRIPTION_READ_AT = "subscriptionReadAt"
_DAY = "day"
_USE_AT = "useAt"
_AT = "at"


@dataclass(frozen=True)
class DeviceSnapshot:
    """One consistent read of a device partition: the device, its slots and its report marks."""

    device: Device
    slots: list[Slot]
    marks: ReportMarks = field(default_factory=ReportMarks)


class _ReportUpdate(UpdateBuilder):
    """``UpdateBuilder`` plus one entry of a map attribute, whose key (a slot id) may hold any character."""

    def entry(self, attribute: str, key: str) -> str:
        placeholder = f"#k{len(self.names)}"
        self.names[placeholder] = key
        return f"{self.name(attribute)}.{placeholder}"

    def set_entry(self, attribute: str, key: str, value: dict[str, Any]) -> str:
        path = self.entry(attribute, key)
        self._set.append(f"{path} = {self.value(value)}")
        return path


class ReportStore(TableGateway):
    """Report-index paging and the guarded writes of the per-device report item."""

    def bucket_devices(self, bucket: str, *, page_size: int | None = None) -> Iterator[tuple[str, str]]:
        # Each Query page is dropped once consumed (``TableGateway.query`` is a generator).
        """Every device of the report bucket as ``(serial, status)``, one index page in memory at a time."""
        kwargs: dict[str, Any] = {
            "IndexName": schema.REPORT_INDEX,
            "KeyConditionExpression": "#bucket = :bucket",
            "ProjectionExpression": "#pk, #status",
            "ExpressionAttributeNames": {
                "#bucket": schema.REPORT_INDEX_PK,
                "#pk": schema.STATE_PK,
                "#status": Attr.STATUS,
            },
            "ExpressionAttributeValues": {":bucket": str_av(bucket)},
        }
        if page_size is not None:
            kwargs["Limit"] = page_size
        for item in self.query(**kwargs):
            status = get_str(item, Attr.STATUS) or DeviceStatus.LINKED.value
            yield schema.serial_from_pk(item[schema.STATE_PK]["S"]), status

    def claim(self, serial: str, *, owner: str, now: datetime, until: datetime) -> bool:
        """Take the device's report lease until ``until``; False while another worker holds it."""
        update = _ReportUpdate()
        update.set(LEASE_OWNER, str_av(owner))
        update.set(LEASE_UNTIL, time_av(until))
        update.set_if_absent(SLOT_REPORTS, {"M": {}})
        lease = update.name(LEASE_UNTIL)
        condition = f"attribute_not_exists({lease}) OR {lease} <= {update.value(str_av(to_iso(now)))}"
        result = self.conditional_update(schema.report_key(serial), update, condition)
        if isinstance(result, Refused):
            logger.info(
                "report lease held by another worker",
                extra={"serial": serial, "leaseUntil": result.attribute(LEASE_UNTIL)},
            )
            return False
        return True

    def release(self, serial: str, *, owner: str) -> None:
        """Give the lease back (only if it is still ``owner``'s: an expired lease may have changed hands)."""
        update = _ReportUpdate()
        update.remove(LEASE_OWNER)
        update.remove(LEASE_UNTIL)
        condition = f"{update.name(LEASE_OWNER)} = {update.value(str_av(owner))}"
        if isinstance(self.conditional_update(schema.report_key(serial), update, condition), Refused):
            logger.info("report lease already released or taken over", extra={"serial": serial})

    def snapshot(self, serial: str) -> DeviceSnapshot | None:
        """Device, slots and report marks from one strongly consistent Query; None without a device item.

        Consistent, because it follows this worker's claim and must see what the previous lease holder
        marked; the order history sharing the partition is filtered out.
        """
        pages = self.query(
            KeyConditionExpression="#pk = :pk",
            FilterExpression="NOT begins_with(#sk, :order)",
            ExpressionAttributeNames={"#pk": schema.STATE_PK, "#sk": schema.STATE_SK},
            ExpressionAttributeValues={
                ":pk": str_av(schema.device_pk(serial)),
                ":order": str_av(schema.ORDER_PREFIX),
            },
            ConsistentRead=True,
        )
        device: Device | None = None
        slots: list[Slot] = []
        marks = ReportMarks()
        for item in pages:
            sort_key = item[schema.STATE_SK]["S"]
            if sort_key == schema.DEVICE_SK:
                device = device_from_item(item)
            elif sort_key.startswith(schema.SLOT_PREFIX):
                slots.append(slot_from_item(item))
            elif sort_key == schema.REPORT_SK:
                marks = _marks_from_item(item)
        if device is None:
            return None
        return DeviceSnapshot(device, sorted(slots, key=lambda slot: slot.slot_id), marks)

    def mark_device(self, serial: str, *, day: str, at: datetime) -> bool:
        """Record the ``deviceStatus`` of ``day``; False if some run already recorded it."""
        update = _ReportUpdate()
        update.set(DEVICE_REPORT_DAY, str_av(day))
        update.set(DEVICE_REPORTED_AT, time_av(at))
        marked = update.name(DEVICE_REPORT_DAY)
        condition = f"attribute_not_exists({marked}) OR {marked} < {update.value(str_av(day))}"
        result = self.conditional_update(schema.report_key(serial), update, condition)
        return not isinstance(result, Refused)

    def mark_slot(
        self, serial: str, slot_id: str, *, day: str, use_at: datetime | None, at: datetime
    ) -> bool:
        """Record the ``slotStatus`` of ``day`` and the last use it carried; False if already recorded."""
        update = _ReportUpdate()
        entry: dict[str, Any] = {_DAY: str_av(day), _AT: time_av(at)}
        if use_at is not None:
            entry[_USE_AT] = time_av(use_at)
        path = update.set_entry(SLOT_REPORTS, slot_id, {"M": entry})
        condition = (
            f"attribute_exists({update.name(SLOT_REPORTS)}) AND (attribute_not_exists({path})"
            f" OR {path}.{update.name(_DAY)} < {update.value(str_av(day))})"
        )
        result = self.conditional_update(schema.report_key(serial), update, condition)
        return not isinstance(result, Refused)

    def mark_slot_outside_lease(
        self, serial: str, slot_id: str, *, day: str, use_at: datetime | None, at: datetime
    ) -> bool:
        """``mark_slot`` for a report sent without the device's lease (a refill's prompt one): the
        report item may not exist yet, so its marks map is created first. False if already recorded."""
        update = _ReportUpdate()
        update.set_if_absent(SLOT_REPORTS, {"M": {}})
        self.update(schema.report_key(serial), update)
        return self.mark_slot(serial, slot_id, day=day, use_at=use_at, at=at)

    def mark_subscription_read(self, serial: str, *, at: datetime) -> None:
        """Record that the device's subscription was read from DRS at ``at``."""
        update = _ReportUpdate()
        update.set(SUBSCRIPTION_READ_AT, time_av(at))
        self.update(schema.report_key(serial), update)


def _marks_from_item(item: Item) -> ReportMarks:
    slots: dict[str, SlotReportMark] = {}
    for slot_id, value in item.get(SLOT_REPORTS, {}).get("M", {}).items():
        entry = value.get("M", {})
        slots[slot_id] = SlotReportMark(day=get_str(entry, _DAY), use_at=get_time(entry, _USE_AT))
    return ReportMarks(
        device_day=get_str(item, DEVICE_REPORT_DAY),
        slots=slots,
        subscription_read_at=get_time(item, SUBSCRIPTION_READ_AT),
    )
