"""Fixtures for the DRS and LWA clients against the DRS + LWA simulator over real loopback HTTP.

Each test gets its own simulator (fresh state, fresh call log, no faults left over); it starts in a few
milliseconds. The clients use a session with tiny backoffs so retry tests stay fast.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from drs_core.adapters.drs_client import DrsClient
from drs_core.adapters.lwa_client import LwaClient
from sandbox.simulator.control import SimulatorControl
from tests.support.clients import (
    CLIENT_ID,
    CLIENT_SECRET,
    DEFAULT_SLOTS,
    FAST_TIMEOUTS,
    MODEL_ID,
    LinkedDevice,
    fast_session,
)

_serials = itertools.count(1)


@pytest.fixture
def sim() -> Iterator[SimulatorControl]:
    """A fresh simulator on an ephemeral loopback port, driven through its control routes."""
    from sandbox.simulator import SimulatorServer

    with SimulatorServer(
        host="127.0.0.1", port=0, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as server:
        yield SimulatorControl(server.url)


@pytest.fixture
def lwa(sim: SimulatorControl) -> LwaClient:
    return LwaClient(sim.url, CLIENT_ID, CLIENT_SECRET, session=fast_session(), timeouts=FAST_TIMEOUTS)


@pytest.fixture
def drs(sim: SimulatorControl) -> DrsClient:
    return DrsClient(sim.url, session=fast_session(), timeouts=FAST_TIMEOUTS)


@pytest.fixture
def link_device(sim: SimulatorControl, lwa: LwaClient) -> Callable[..., LinkedDevice]:
    """Create a customer, authorise a device with slots, exchange the code with our LwaClient."""

    def link(
        *,
        slots: dict[str, dict[str, Any]] | None = None,
        is_test_device: bool = True,
        order_issue: bool = False,
        customer_id: str | None = None,
        serial: str | None = None,
    ) -> LinkedDevice:
        chosen_slots = DEFAULT_SLOTS if slots is None else slots
        customer = customer_id or sim.create_customer(order_issue=order_issue)["customerId"]
        device_serial = serial or f"SN{next(_serials):06d}"
        code, redirect_uri = sim.authorize(
            customer,
            model_id=MODEL_ID,
            serial=device_serial,
            slots=chosen_slots,
            is_test_device=is_test_device,
        )
        grant = lwa.exchange_code(code, redirect_uri)
        return LinkedDevice(
            serial=device_serial,
            model_id=MODEL_ID,
            customer_id=customer,
            slots=chosen_slots,
            grant=grant,
            code=code,
        )

    return link
