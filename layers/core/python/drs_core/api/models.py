"""Request and response models of the public HTTP API (docs/api.md §1), in its own camelCase names:
the shared parts and the device route's; the companion app's own are in ``drs_core.api.companion`` (the
usage function, on every device's path, builds only the models it answers with).

Requests reject unknown fields (``extra="forbid"``) and are strict about JSON types, so a typo or a
string where a number belongs answers 400 instead of being guessed at. Responses are built from the
domain models by ``slot_view`` (and ``companion.device_view``); optional fields that have no value are
left out of the JSON rather than sent as null.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from drs_core.clock import parse_iso, to_iso
from drs_core.domain import forecast as forecasting
from drs_core.domain.models import Reading, ReadingKind, Slot
from drs_core.domain.reorder_policy import reorder_point

# DRS's rule for model ids and serials (docs/drs.md §5); slot ids are ours to bound.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9+_-]{1,64}$"
IDENTIFIER_MAX_LENGTH = 64
SLOT_ID_PATTERN = r"^[A-Za-z0-9+_.:-]{1,128}$"

Serial = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, max_length=IDENTIFIER_MAX_LENGTH)]
ModelId = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, max_length=IDENTIFIER_MAX_LENGTH)]
SlotId = Annotated[str, Field(pattern=SLOT_ID_PATTERN, max_length=128)]


class RequestModel(BaseModel):
    """Base of every request body: unknown fields and type coercions are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ResponseModel(BaseModel):
    """Base of every response body: ``None`` optionals are omitted (fields in ``_nullable`` stay)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _nullable: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler):  # no return type: keeps the schema
        data = handler(self)
        return {key: value for key, value in data.items() if value is not None or key in self._nullable}


# --- device requests ---------------------------------------------------------------------------------

# Far beyond any slot's contents, far inside DynamoDB's number range.
MAX_QUANTITY = 1e12
# The smallest non-zero number a request may carry: DynamoDB stores nothing under 1E-130 and at most 38
# significant digits, and the usage write adds quantities to stored ones (1e12 + 1e-6 still fits).
MIN_NONZERO = 1e-6
MAX_READINGS = 100
# ISO-8601 as the contract takes it: date, "T" or a space, time, optional fraction and zone. (Python's
# parser alone would take any character between date and time, control characters included.)
ISO_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?$")


def storable(value: float | None) -> float | None:
    """``value`` if DynamoDB can hold it exactly enough: zero, or at least ``MIN_NONZERO`` in size."""
    if value is not None and value != 0 and abs(value) < MIN_NONZERO:
        raise ValueError(f"must be 0 or at least {MIN_NONZERO}")
    return value


# A number of a request body that is stored: 0, or of a size DynamoDB keeps (see MIN_NONZERO).
Storable = AfterValidator(storable)


class ReadingModel(RequestModel):
    """One slot reading: exactly one of remaining / consumed / refilled (docs/api.md ``Reading``)."""

    slotId: SlotId
    observedAt: datetime = Field(
        description="ISO-8601 date and time (`T` or a space between), optional zone; without one it is UTC"
    )
    remainingQuantity: Annotated[
        float | None,
        Field(ge=0, le=MAX_QUANTITY, allow_inf_nan=False, description=f"0 or from {MIN_NONZERO}"),
        Storable,
    ] = None
    consumedQuantity: float | None = Field(default=None, ge=MIN_NONZERO, le=MAX_QUANTITY, allow_inf_nan=False)
    refilledQuantity: float | None = Field(default=None, ge=MIN_NONZERO, le=MAX_QUANTITY, allow_inf_nan=False)
    originalQuantity: float | None = Field(default=None, ge=MIN_NONZERO, le=MAX_QUANTITY, allow_inf_nan=False)

    @field_validator("observedAt", mode="before")
    @classmethod
    def _iso_timestamp(cls, value: Any) -> datetime:
        # Strict models take no strings for datetimes, and epoch numbers are not accepted here.
        if not isinstance(value, str) or not 10 <= len(value) <= 40 or not ISO_TIMESTAMP.match(value):
            raise ValueError("observedAt must be an ISO-8601 timestamp")
        try:
            return parse_iso(value)
        except OverflowError:  # valid ISO, but its zone moves it outside years 1-9999 in UTC
            raise ValueError("observedAt is out of range in UTC") from None

    @model_validator(mode="after")
    def _exactly_one_quantity(self) -> ReadingModel:
        quantities = (self.remainingQuantity, self.consumedQuantity, self.refilledQuantity)
        given = [q for q in quantities if q is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of remainingQuantity, consumedQuantity, refilledQuantity")
        return self

    def to_reading(self) -> Reading:
        """The domain ``Reading``."""
        if self.remainingQuantity is not None:
            kind, amount = ReadingKind.REMAINING, self.remainingQuantity
        elif self.consumedQuantity is not None:
            kind, amount = ReadingKind.CONSUMED, self.consumedQuantity
        else:
            kind, amount = ReadingKind.REFILLED, float(self.refilledQuantity or 0.0)
        return Reading(self.slotId, self.observedAt, kind, amount, self.originalQuantity)


class UsageRequest(RequestModel):
    """``POST /v1/devices/{serial}/usage``: 1-100 readings."""

    readings: list[ReadingModel] = Field(min_length=1, max_length=MAX_READINGS)


class UsageResponse(BaseModel):
    """202 answer of the usage route: every slot the request named, as it stands now."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    slots: list[SlotView]


# --- responses ---------------------------------------------------------------------------------------


class OrderView(ResponseModel):
    state: Literal["NONE", "REQUESTED", "PLACED", "SHIPPED", "CANCELLED"]
    instanceId: str | None = None
    estimatedDeliveryDate: str | None = None
    cooldownUntil: str | None = None


class PolicyView(ResponseModel):
    thresholdFraction: float
    leadTimeDays: float
    safetyDays: float
    autoReorder: bool


class SlotView(ResponseModel):
    slotId: str
    subscribed: bool
    asin: str | None = None
    unit: str | None = None
    originalQuantity: float
    remainingQuantity: float
    onHandQuantity: float
    dailyConsumption: float | None = None
    expectedRunOutDate: str | None = None
    expectedReplenishmentDate: str | None = None
    order: OrderView
    policy: PolicyView


class ErrorDetail(ResponseModel):
    code: str
    message: str


class ErrorResponse(ResponseModel):
    error: ErrorDetail


# --- domain → view -----------------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    return to_iso(value) if value is not None else None


def slot_view(slot: Slot, now: datetime) -> SlotView:
    """The API's ``Slot``, with the forecast computed for ``now`` (never stored, so never stale): the
    run-out date, and as the replenishment date the day stock reaches the policy's reorder point (the
    daily plan's once the slot's demand is estimated), when the backend will order."""
    point = reorder_point(
        slot.original_quantity, slot.policy, slot.daily_consumption, slot.planned_reorder_point
    )
    predicted = forecasting.forecast(
        remaining=slot.remaining_quantity,
        on_hand=slot.on_hand_quantity,
        daily_consumption=slot.daily_consumption,
        now=now,
        lead_time_days=slot.policy.lead_time_days,
        reorder_point=point,
    )
    return SlotView(
        slotId=slot.slot_id,
        subscribed=slot.subscribed,
        asin=slot.asin,
        unit=slot.unit,
        originalQuantity=slot.original_quantity,
        remainingQuantity=slot.remaining_quantity,
        onHandQuantity=slot.on_hand_quantity,
        dailyConsumption=slot.daily_consumption,
        expectedRunOutDate=iso(predicted.run_out_at) if predicted else None,
        expectedReplenishmentDate=iso(predicted.expected_replenishment_at) if predicted else None,
        order=OrderView(
            state=slot.order.state.value,
            instanceId=slot.order.instance_id,
            estimatedDeliveryDate=iso(slot.order.estimated_delivery_date),
            cooldownUntil=iso(slot.order.cooldown_until),
        ),
        policy=PolicyView(
            thresholdFraction=slot.policy.threshold_fraction,
            leadTimeDays=slot.policy.lead_time_days,
            safetyDays=slot.policy.safety_days,
            autoReorder=slot.policy.auto_reorder,
        ),
    )
