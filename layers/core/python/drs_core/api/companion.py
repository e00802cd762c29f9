"""The companion app's request and response models (docs/api.md §1): linking, policy, device views,
the settings link and test orders. Shared parts (bases, identifiers, ``SlotView``) are in
``drs_core.api.models``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from drs_core.api.models import (
    MIN_NONZERO,
    ModelId,
    RequestModel,
    ResponseModel,
    SlotView,
    Storable,
    iso,
    slot_view,
)
from drs_core.domain.models import Device, Slot
from drs_core.domain.usage import last_active_at

# --- requests ----------------------------------------------------------------------------------------


class RegistrationRequest(RequestModel):
    """``POST /v1/devices/{serial}/registration``: the LWA authorisation code the app obtained.

    ``isTestDevice`` (an extension of docs/api.md) repeats the ``is_test_device`` the app put in the LWA
    ``scope_data``: DRS never tells the backend, and test-order cancellation depends on it.
    """

    modelId: ModelId | None = Field(
        default=None, description="Optional where pairing codes are checked: the registry's model is used"
    )
    pairingCode: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9 -]{4,32}$",
        description="The code the app read from the device (proof of possession); required by default",
    )
    authorizationCode: str = Field(min_length=1, max_length=2048)
    redirectUri: str = Field(min_length=1, max_length=2048)
    # RFC 7636: 43 to 128 characters of the unreserved set.
    codeVerifier: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._~-]{43,128}$")
    isTestDevice: bool = False


class PolicyUpdateRequest(RequestModel):
    """``PUT …/slots/{slotId}/policy``: the fields to change; at least one."""

    thresholdFraction: Annotated[
        float | None, Field(ge=0, le=1, description=f"0 or from {MIN_NONZERO}"), Storable
    ] = None
    leadTimeDays: Annotated[
        float | None, Field(ge=0, le=90, description=f"0 or from {MIN_NONZERO}"), Storable
    ] = None
    autoReorder: bool | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> PolicyUpdateRequest:
        if self.thresholdFraction is None and self.leadTimeDays is None and self.autoReorder is None:
            raise ValueError("name at least one of thresholdFraction, leadTimeDays, autoReorder")
        return self


# --- responses ---------------------------------------------------------------------------------------


class DeviceView(ResponseModel):
    _nullable: ClassVar[frozenset[str]] = frozenset({"lastActiveAt"})

    serial: str
    modelId: str
    status: Literal["LINKED", "REAUTH_REQUIRED", "DEREGISTERED"]
    isTestDevice: bool
    lastActiveAt: str | None
    slots: list[SlotView]


class DeviceListResponse(ResponseModel):
    devices: list[DeviceView]


class RegistrationResponse(ResponseModel):
    device: DeviceView
    deviceToken: str = Field(description="The device credential; shown once, stored only as a hash")


class SettingsLinkResponse(ResponseModel):
    url: str


class TestOrderSlotStatus(ResponseModel):
    slotId: str
    orderStatus: str


class TestOrdersCancelledResponse(ResponseModel):
    slots: list[TestOrderSlotStatus]


# --- domain → view -----------------------------------------------------------------------------------


def device_view(device: Device, slots: list[Slot], now: datetime) -> DeviceView:
    """The API's ``Device`` with its slots."""
    return DeviceView(
        serial=device.serial,
        modelId=device.model_id,
        status=device.status.value,
        isTestDevice=device.is_test_device,
        lastActiveAt=iso(last_active_at(device, slots)),
        slots=[slot_view(slot, now) for slot in slots],
    )
