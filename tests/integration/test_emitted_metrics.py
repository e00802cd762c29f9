"""The metric records the code prints (EMF) have the names and dimension sets the dashboard searches for
(infra/monitoring.py): a mismatch would leave a dashboard graph empty without any error."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from drs_core.adapters.drs_client import DrsClient
from drs_core.errors import DrsTokenRejected
from drs_core.services.notifications import Outcome, count_outcome
from infra.constants import METRICS_NAMESPACE
from infra.monitoring import (
    DRS_CALL_DIMENSIONS,
    DRS_CALL_METRICS,
    NOTIFICATION_DIMENSIONS,
    NOTIFICATION_METRIC,
)


@pytest.fixture(autouse=True)
def emf_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics enabled, as in Lambda, with the service name the function's environment gives Powertools."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "report_worker")


def emf_records(out: str) -> list[dict[str, Any]]:
    return [
        record for line in out.splitlines() if line.startswith("{") and "_aws" in (record := json.loads(line))
    ]


def only_schema(record: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    """(namespace, dimension names, metric names) of a record holding one metric directive."""
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    (dimensions,) = directive["Dimensions"]
    return directive["Namespace"], sorted(dimensions), [metric["Name"] for metric in directive["Metrics"]]


def test_each_drs_call_prints_one_record_per_operation_and_service(
    link_device, drs: DrsClient, capsys
) -> None:
    # Given a linked device
    device = link_device()
    capsys.readouterr()

    # When the report worker sends its deviceStatus
    drs.device_status(device.token, datetime(2026, 1, 1, tzinfo=UTC))

    # Then one record counts the call, no error, and its latency, under the dashboard's dimension set
    (record,) = emf_records(capsys.readouterr().out)
    assert only_schema(record) == (METRICS_NAMESPACE, sorted(DRS_CALL_DIMENSIONS), list(DRS_CALL_METRICS))
    assert (record["Operation"], record["service"]) == ("deviceStatus", "report_worker")
    assert (record["DrsCalls"], record["DrsErrors"]) == ([1], [0])
    assert record["DrsLatency"][0] >= 0


def test_a_refused_drs_call_counts_as_an_error(drs: DrsClient, capsys) -> None:
    # Given a token DRS never issued
    capsys.readouterr()

    # When a replenish is refused
    with pytest.raises(DrsTokenRejected):
        drs.replenish("Atza|not-a-real-token", "Filter")

    # Then its record counts one call and one error for the replenish endpoint
    (record,) = emf_records(capsys.readouterr().out)
    assert (record["Operation"], record["DrsCalls"], record["DrsErrors"]) == ("replenish", [1], [1])


def test_notification_outcomes_carry_type_outcome_and_service(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # Given the notification function's environment
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "notifications")

    # When one notification's outcome is counted
    count_outcome("OrderPlacedNotification", Outcome.APPLIED)

    # Then its record has the dimension set the dashboard's search names
    (record,) = emf_records(capsys.readouterr().out)
    assert only_schema(record) == (METRICS_NAMESPACE, sorted(NOTIFICATION_DIMENSIONS), [NOTIFICATION_METRIC])
    assert (record["type"], record["outcome"], record["service"]) == (
        "OrderPlacedNotification",
        "applied",
        "notifications",
    )
