"""What the companion app reads about its devices, with ownership enforced.

A user sees only the devices it linked: anything else, existing or not, is ``DeviceNotFound`` (404), so
serials of other customers do not leak through a 403.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from drs_core.adapters.drs_client import DrsClient, SlotOrderStatus
from drs_core.adapters.notification_store import mark_order_cancelled
from drs_core.adapters.state_repository import StateRepository
from drs_core.adapters.token_vault import TokenVault
from drs_core.clock import default_clock
from drs_core.domain.models import Device, OrderState, Slot
from drs_core.domain.order_lifecycle import Change, OrderEvent, apply
from drs_core.errors import DeviceNotFound, DrsBadRequest, DrsNotFound, NotATestDevice, SlotNotFound
from drs_core.observability import logger
from drs_core.services.drs_calls import call_drs

# cancel-test-order's answer for a slot with no open order (any more): docs/drs.md §3.
NO_ORDER_IN_PROGRESS = "NO_ORDER_IN_PROGRESS"


def owned_device(
    serial: str, owner_id: str, repository: StateRepository, *, consistent: bool = False
) -> Device:
    """The device if ``owner_id`` linked it; ``DeviceNotFound`` otherwise."""
    device = repository.get_device(serial, consistent=consistent)
    if device is None or device.owner_id != owner_id:
        raise DeviceNotFound(f"device {serial} not found")
    return device


def get_device(serial: str, owner_id: str, repository: StateRepository) -> tuple[Device, list[Slot]]:
    """One of the user's devices with its slots (one Query)."""
    found = repository.get_device_with_slots(serial)
    if found is None or found[0].owner_id != owner_id:
        raise DeviceNotFound(f"device {serial} not found")
    return found


def list_devices(owner_id: str, repository: StateRepository) -> list[tuple[Device, list[Slot]]]:
    """Every device the user linked (deregistered ones included, so the app can show them), by serial."""
    devices = []
    for device in sorted(repository.list_devices_by_owner(owner_id), key=lambda d: d.serial):
        found = repository.get_device_with_slots(device.serial)
        # The owner index is eventually consistent: skip a device that changed hands meanwhile.
        if found is not None and found[0].owner_id == owner_id:
            devices.append(found)
    return devices


def update_policy(
    serial: str,
    slot_id: str,
    *,
    owner_id: str,
    repository: StateRepository,
    threshold_fraction: float | None = None,
    lead_time_days: float | None = None,
    auto_reorder: bool | None = None,
) -> Slot:
    """Change the named fields of a slot's reorder policy; the others keep their values."""
    owned_device(serial, owner_id, repository)
    slot = repository.get_slot(serial, slot_id, consistent=True)
    if slot is None:
        raise SlotNotFound(f"slot {slot_id} of device {serial} not found")
    changes = {
        name: value
        for name, value in (
            ("threshold_fraction", threshold_fraction),
            ("lead_time_days", lead_time_days),
            ("auto_reorder", auto_reorder),
        )
        if value is not None
    }
    updated = repository.update_policy(serial, slot_id, replace(slot.policy, **changes))
    logger.info("slot policy updated", extra={"serial": serial, "slotId": slot_id, "fields": sorted(changes)})
    return updated


def cancel_test_orders(
    serial: str,
    slot_id: str | None,
    *,
    owner_id: str,
    drs: DrsClient,
    vault: TokenVault,
    repository: StateRepository,
) -> tuple[SlotOrderStatus, ...]:
    """Cancel the open test order of one slot, or of every slot (test devices only).

    DRS's answer is the truth: every slot it reports ``NO_ORDER_IN_PROGRESS`` for has no open order any
    more, so its placed test order is recorded ``CANCELLED`` here (no cooldown: the maker's own cancel).
    No DRS source says an ``OrderCancelledNotification`` follows; if one does, it finds the order
    cancelled and changes nothing.
    """
    device = owned_device(serial, owner_id, repository)
    if not device.is_test_device:
        raise NotATestDevice(f"device {serial} is not a test device")
    if slot_id is not None and repository.get_slot(serial, slot_id) is None:
        raise SlotNotFound(f"slot {slot_id} of device {serial} not found")
    try:
        statuses = call_drs(
            serial, lambda token: drs.cancel_test_orders(token, slot_id), vault=vault, repository=repository
        )
    except DrsNotFound as missing:
        raise SlotNotFound(f"slot {slot_id} of device {serial} not found") from missing
    except DrsBadRequest as refused:
        # DRS's only 400 on this call, once the token was accepted: the device is not a test device.
        raise NotATestDevice(f"DRS does not treat device {serial} as a test device") from refused
    now = default_clock().now()
    for status in statuses:
        if status.order_status == NO_ORDER_IN_PROGRESS:
            _close_cancelled_test_order(serial, status.slot_id, repository, now)
    return statuses


def _close_cancelled_test_order(
    serial: str, slot_id: str, repository: StateRepository, now: datetime
) -> None:
    """DRS holds no open order for the slot: a placed test order of ours is cancelled (conditional on
    the state read, so a notification that got there first wins). A claim still waiting for its
    replenish answer (REQUESTED, no order id) and a shipped order are left to their own paths."""
    slot = repository.get_slot(serial, slot_id, consistent=True)
    if slot is None or slot.order.state is not OrderState.PLACED or slot.order.instance_id is None:
        return
    change = Change(OrderEvent.CANCEL, now, instance_id=slot.order.instance_id, customer_cancel=False)
    cancelled = replace(apply(slot.order, change), instance_id=slot.order.instance_id)
    if repository.set_slot_order(serial, slot_id, expected_states={OrderState.PLACED}, new=cancelled) is None:
        return
    mark_order_cancelled(repository, serial, slot_id, slot.order.instance_id)
    logger.info(
        "test order cancelled from DRS's answer",
        extra={"serial": serial, "slotId": slot_id, "instanceId": slot.order.instance_id},
    )
