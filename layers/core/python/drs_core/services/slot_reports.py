"""The prompt ``slotStatus`` of a refill: DRS wants one "when the contents of a slot are consumed", and
daily at a minimum (the report worker's daily visit, ``services/reporting.py``).

A refill reading shows a package was used up: the usage path flags the slot (``slotReportDue``), and
the reorder function's second event-source filter (``schema.SLOT_REPORT_FILTER_PATTERN``) hands the
record to ``report_refilled_slot``. Refills are rare (one per package), so this adds no cost per reading
and at most one DRS call per package.

Never twice for nothing: the flag is read consistently and removed after the report, so a redelivered
or later record of the same slot finds nothing to do; the report is marked on the device's report item
as the day's ``slotStatus`` (``ReportStore.mark_slot``, conditional on the day), so the daily visit
does not send it again that day. A failure is logged and counted, the flag removed, and the report left
unmarked: the daily visit, which reports every slot consumed since its last report, sends it then.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from enum import StrEnum

from aws_lambda_powertools.metrics import MetricUnit

from drs_core.adapters.drs_client import DrsClient, SlotStatusReport
from drs_core.adapters.items import slot_from_item
from drs_core.adapters.report_store import ReportStore
from drs_core.adapters.state_repository import StateRepository
from drs_core.adapters.token_vault import TokenVault
from drs_core.adapters.usage_store import UsageStore, state_from_item
from drs_core.domain.models import DeviceStatus
from drs_core.domain.reporting import report_day, slot_figures
from drs_core.errors import DrsError, LwaError, ReauthRequired, TokensMissing
from drs_core.observability import logger, metrics
from drs_core.services.drs_calls import call_drs


class SlotReportOutcome(StrEnum):
    SENT = "SLOT_REPORT_SENT"  # DRS accepted the slotStatus
    NOT_DUE = "SLOT_REPORT_NOT_DUE"  # no flag (reported already, or no such slot)
    SKIPPED = "SLOT_REPORT_SKIPPED"  # the device is not linked: nothing to report to
    FAILED = "SLOT_REPORT_FAILED"  # DRS or LWA refused or failed: the daily visit reports it


def report_refilled_slot(
    serial: str,
    slot_id: str,
    *,
    store: UsageStore,
    repository: StateRepository,
    reports: ReportStore,
    vault: TokenVault,
    drs: DrsClient,
    now: datetime,
) -> SlotReportOutcome:
    """Send the slot's ``slotStatus`` if a refill flagged it; mark the day's report; remove the flag."""
    item = store.get_item(serial, slot_id)
    if item is None or not state_from_item(item).slot_report_due:
        return _done(SlotReportOutcome.NOT_DUE)
    device = repository.get_device(serial, consistent=True)
    if device is None or device.status is not DeviceStatus.LINKED:
        store.clear_slot_report_due(serial, slot_id)
        return _done(SlotReportOutcome.SKIPPED)
    slot = slot_from_item(item)
    # The same figures as the daily report's (SlotFigures and the request body share their fields).
    report = SlotStatusReport(**asdict(slot_figures(slot, now=now)))
    try:
        call_drs(
            serial, lambda token: drs.slot_status(token, slot_id, report), vault=vault, repository=repository
        )
    except (DrsError, LwaError, ReauthRequired, TokensMissing) as failure:
        # One attempt per refill: retrying through the stream would hold the slot's later records up.
        logger.warning(
            "prompt slot status not sent; the daily report will carry it",
            extra={"errorType": type(failure).__name__, "status": getattr(failure, "status", None)},
        )
        store.clear_slot_report_due(serial, slot_id)
        return _done(SlotReportOutcome.FAILED)
    reports.mark_slot_outside_lease(serial, slot_id, day=report_day(now), use_at=slot.last_use_at, at=now)
    store.clear_slot_report_due(serial, slot_id)
    logger.info("slot status sent for a refill")
    return _done(SlotReportOutcome.SENT)


def _done(outcome: SlotReportOutcome) -> SlotReportOutcome:
    name = "PromptSlotReport" + outcome.value.removeprefix("SLOT_REPORT_").title().replace("_", "")
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    return outcome
