"""The simulator's in-memory records: plain data, no behaviour beyond small derived properties.

Secrets (tokens, codes, the client secret) are never stored as fields of these records: they are only
the keys of the Simulator's dictionaries, so a repr or a log line of a record cannot leak one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from drs_core.clock import to_iso

ACCESS_TOKEN_LIFETIME = timedelta(hours=1)
CODE_LIFETIME = timedelta(minutes=5)
CUSTOMER_CANCEL_WINDOW = timedelta(hours=24)
RESOLUTION_WINDOW = timedelta(hours=72)
DELIVERY_TIME = timedelta(days=3)


@dataclass(frozen=True)
class Product:
    """The product a customer picked for a slot on Amazon."""

    asin: str
    quantity: float
    unit: str

    def to_json(self) -> dict[str, object]:
        return {"asin": self.asin, "quantity": self.quantity, "unit": self.unit}


@dataclass
class Customer:
    """An Amazon customer. ``order_issue`` sends their new orders into the resolution flow."""

    customer_id: str
    name: str
    order_issue: bool = False

    def to_json(self) -> dict[str, object]:
        return {"customerId": self.customer_id, "name": self.name, "orderIssue": self.order_issue}


@dataclass
class Device:
    """One registration of a device (serial) to a customer; a re-registration is a new record.

    ``slots`` maps every slot id of the device to the picked product, or None when nothing is picked
    (the slot exists but is not subscribed).
    """

    registration_id: int
    serial: str
    model_id: str
    customer_id: str
    lwa_client_id: str
    is_test_device: bool
    slots: dict[str, Product | None]
    registered_at: datetime
    active: bool = True
    deregistered_at: datetime | None = None
    last_device_status: dict[str, object] | None = None
    slot_reports: dict[str, dict[str, object]] = field(default_factory=dict)


class OrderState(StrEnum):
    """Where an order stands. ``TROUBLED`` is the resolution flow (payment, address or stock trouble)."""

    TROUBLED = "TROUBLED"
    PLACED = "PLACED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"

    @property
    def is_open(self) -> bool:
        """An open order keeps its slot locked."""
        return self in (OrderState.TROUBLED, OrderState.PLACED, OrderState.SHIPPED)


# What getOrderInfo reports per state ("Processing" and "Pending" are the ones seen in DRS samples).
ORDER_INFO_STATUS = {
    OrderState.TROUBLED: "Pending",
    OrderState.PLACED: "Processing",
    OrderState.SHIPPED: "Shipped",
    OrderState.DELIVERED: "Delivered",
    OrderState.CANCELLED: "Cancelled",
}


@dataclass
class Order:
    """A replenishment order of one slot, owned by the registration that placed it."""

    instance_id: str
    registration_id: int
    serial: str
    slot_id: str
    product: Product
    is_test: bool
    requested_at: datetime
    state: OrderState
    # Set once the order is placed (at the replenish call, or when the customer resolves the trouble).
    placed_at: datetime | None = None
    cancel_reason: str | None = None
    closed_at: datetime | None = None
    # When the parcel really arrives relative to its estimated date (the world's draw, or a control
    # route's ``delay``): positive is late, negative early.
    delivery_offset: timedelta = timedelta(0)

    @property
    def estimated_delivery_date(self) -> datetime | None:
        return self.placed_at + DELIVERY_TIME if self.placed_at else None

    @property
    def arrives_at(self) -> datetime | None:
        """When the parcel arrives (the clock then delivers the order): its estimate plus its offset."""
        eta = self.estimated_delivery_date
        return eta + self.delivery_offset if eta else None

    @property
    def resolution_deadline(self) -> datetime:
        return self.requested_at + RESOLUTION_WINDOW

    def to_json(self) -> dict[str, object]:
        eta = self.estimated_delivery_date
        return {
            "instanceId": self.instance_id,
            "serial": self.serial,
            "slotId": self.slot_id,
            "product": self.product.to_json(),
            "isTestOrder": self.is_test,
            "state": self.state.value,
            "requestedAt": to_iso(self.requested_at),
            "placedAt": to_iso(self.placed_at) if self.placed_at else None,
            "estimatedDeliveryDate": to_iso(eta) if eta else None,
            "arrivesAt": to_iso(self.arrives_at) if self.arrives_at and not self.is_test else None,
            "closedAt": to_iso(self.closed_at) if self.closed_at else None,
            "resolutionDeadline": to_iso(self.resolution_deadline)
            if self.state is OrderState.TROUBLED
            else None,
            "cancelReason": self.cancel_reason,
        }


@dataclass
class AccessGrant:
    """What an access token stands for. ``registration_id`` is None for a companion-app token."""

    customer_id: str
    issued_at: datetime
    expires_at: datetime | None
    registration_id: int | None = None
    revoked: bool = False

    def is_valid(self, now: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


@dataclass
class RefreshGrant:
    """What a refresh token stands for. ``public_client`` (PKCE) tokens refresh without the secret."""

    registration_id: int
    public_client: bool
    revoked: bool = False


@dataclass
class AuthorizationCode:
    """The customer's consent, waiting to be exchanged at the token endpoint."""

    customer_id: str
    model_id: str
    serial: str
    slots: dict[str, Product | None]
    is_test_device: bool
    redirect_uri: str
    code_challenge: str | None
    issued_at: datetime
    used: bool = False

    def is_expired(self, now: datetime) -> bool:
        return now >= self.issued_at + CODE_LIFETIME


@dataclass
class SignInCode:
    """A customer's sign-in (scope ``profile``) on the LWA page, waiting to be exchanged for an app token."""

    customer_id: str
    redirect_uri: str
    code_challenge: str | None
    issued_at: datetime
    used: bool = False

    def is_expired(self, now: datetime) -> bool:
        return now >= self.issued_at + CODE_LIFETIME


@dataclass
class CallRecord:
    """One DRS/LWA call as ``GET /__sim/calls`` shows it: never a token or a secret."""

    operation: str
    method: str
    path: str
    serial: str | None = None
    slot_id: str | None = None
    status: int = 0
    detail_code: str | None = None
    instance_id: str | None = None  # the order a replenish placed or named (ORDER_INPROGRESS)
    fault: bool = False

    def to_json(self, seq: int, at: str) -> dict[str, object]:
        entry: dict[str, object] = {
            "seq": seq,
            "at": at,
            "operation": self.operation,
            "method": self.method,
            "path": self.path,
        }
        if self.serial is not None:
            entry["serial"] = self.serial
        if self.slot_id is not None:
            entry["slotId"] = self.slot_id
        entry["status"] = self.status
        if self.detail_code is not None:
            entry["detailCode"] = self.detail_code
        if self.instance_id is not None:
            entry["eventInstanceId"] = self.instance_id
        if self.fault:
            entry["fault"] = True
        return entry
