"""Daily DRS reporting (docs/architecture.md §1 flow 5): the planner fans a bucket out into jobs, the worker
reports each job's devices.

**Planner.** Every hour one of 24 buckets is due (``schema.report_bucket``, the hour of the scheduled
time). It pages through the bucket in the sparse ``report`` index, skips devices that are not
``LINKED`` (counted), and streams jobs of ``JOB_SIZE`` serials to SQS ten messages per call: memory
holds one index page and one batch, whatever the number of devices. A run is idempotent per
(report day, bucket), so a duplicate scheduler delivery or a faster schedule never plans a bucket twice.

**Worker.** Per device, with a lease, then mark after success:

1. *claim* the device's report item (``leaseUntil`` in the future, conditional on no live lease). Two
   workers never call DRS for the same device at once: the one refused counts the device for retry
   and its job goes back to the queue, to find the device done on the next delivery.
2. read device, slots and report marks (strongly consistent, after the claim: sees the last holder's
   marks), call ``deviceStatus`` if the day is not marked, then ``slotStatus`` for each due slot;
3. *mark* each report right after DRS accepted it, conditionally (``day < :today``), and release.

Why both: the mark alone cannot stop two concurrent runs from both calling DRS before either marks;
the lease alone cannot tell a redelivery that the work is done. The remaining window, a crash between
DRS's 200 and the mark write, repeats one report on the next delivery: DRS has no idempotency key, so
that is the least a call-then-mark design can promise, and it errs on the side DRS tolerates (one more
status report), never on a missing one. The lease outlives the function timeout, so a worker that dies
holding it blocks nobody beyond the message's visibility timeout.

Retryable faults (DRS 429/5xx after the client's own retries, LWA outages, a live lease) leave the
device unmarked and raise ``ReportJobIncomplete`` at the end of the job: SQS redelivers that record
alone (partial batch response), and the redelivery skips everything already marked. Devices needing
re-authorisation or not linked any more are skipped and counted; a request DRS refuses for good (400)
is counted as failed and not retried (it would fail again): the coverage alarm sees it.

Metrics of a job carry the job's planned time as their timestamp, so the devices a day's planner runs
found due and the reports the worker sent for them land in the same UTC day, whenever the work ran:
``ReportsDue - ReportsSent - ReportsSkipped`` over a completed day is the number of linked devices
left unreported that day (the coverage alarm in ``infra/reporting.py``).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import islice
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from drs_core.adapters.report_queue import ReportQueue
from drs_core.adapters.report_store import DeviceSnapshot, ReportStore
from drs_core.adapters.state_repository import StateRepository
from drs_core.adapters.token_vault import TokenVault
from drs_core.adapters.usage_store import UsageStore
from drs_core.clock import default_clock, parse_iso, to_iso
from drs_core.domain.models import DeviceStatus, OrderState, Slot
from drs_core.domain.reporting import (
    bucket_for_hour,
    device_report_due,
    most_recently_active,
    report_day,
    slot_figures,
    slot_report_due,
)
from drs_core.errors import (
    DrsBadRequest,
    DrsNotFound,
    DrsRetryableError,
    LwaRetryableError,
    ReauthRequired,
    ReportJobIncomplete,
    TokensMissing,
)
from drs_core.observability import NAMESPACE, logger, metrics
from drs_core.services.drs_calls import call_drs

if TYPE_CHECKING:
    # The worker's only: imported where it reports, so the planner's cold start loads no HTTP stack.
    from drs_core.adapters.drs_client import DrsClient, OrderInfo, SubscriptionInfo

# Serials per job: a job is one SQS message and one worker invocation's work (~25 devices, 3 DRS calls each).
JOB_SIZE = 25
# Worst case of one device: three DRS calls at the HTTP client's deadline, plus the DynamoDB writes.
# The worker starts no new device with less time than this left; the rest of the job is redelivered.
DEVICE_TIME_RESERVE_SECONDS = 65.0
# A lease outlives the worker's timeout by this much, so a worker that dies holding it cannot be
# overlapped by another that still believes in it.
LEASE_MARGIN_SECONDS = 30.0
# Report-index items per Query page. Reads cost the same whatever the page size (capacity is counted
# per 4 KB read); a fixed page keeps the planner's memory flat (a full 1 MB page is ~15 MB of Python).
INDEX_PAGE_ITEMS = 1000
# A duplicate plan of the same (day, bucket) within this long is a no-op.
PLAN_IDEMPOTENCY_SECONDS = 24 * 3600
# Order states in which a slot waits for a delivery that DRS never announces (reference §4).
OPEN_ORDER_STATES = frozenset({OrderState.PLACED, OrderState.SHIPPED})

# Slot upkeep owned by other services, run on the daily visit (see ``SlotUpkeep``).
SettleDeliveries = Callable[[str, list[Slot], datetime], list[Slot]]
RefreshForecast = Callable[[Slot, datetime], Slot | None]
# (serial, slots, now, getOrderInfo of the device, is a test device) -> the slots that moved
# (serial, open-order slots, now, getOrderInfo lookup, is test device, model id) -> slots that moved
ReconcileOrders = Callable[
    [str, list[Slot], datetime, "Callable[[str], OrderInfo]", bool, str | None], list[Slot]
]
# (serial, slots, subscriptionInfo answer, now) -> how many slots changed
# (serial, slots, subscriptionInfo answer, now, model id) -> slots changed
ResyncSubscription = Callable[[str, list[Slot], "SubscriptionInfo", datetime, str | None], int]


class Outcome(StrEnum):
    """What became of one device of a job; the values are the metric names."""

    SENT = "ReportsSent"  # deviceStatus reported and recorded by this run
    ALREADY_SENT = "ReportsAlreadySent"  # an earlier run (redelivery, duplicate job) did it
    SKIPPED = "ReportsSkipped"  # not linked any more, or needs re-authorisation
    FAILED = "ReportsFailed"  # DRS refused the request for good: not retried
    RETRY = "ReportsRetried"  # retryable fault or live lease: the job goes back to the queue


@dataclass(frozen=True)
class ReportJob:
    """One SQS message: serials of one bucket to report for one report day."""

    day: str
    bucket: str
    planned_at: datetime
    serials: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "day": self.day,
                "bucket": self.bucket,
                "plannedAt": to_iso(self.planned_at),
                "serials": list(self.serials),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, body: str) -> ReportJob:
        """Parse a job message; ``ValueError`` if it is not one (the record then fails to the DLQ)."""
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("a report job is a JSON object")
        serials = data.get("serials")
        if not isinstance(serials, list) or not all(isinstance(s, str) and s for s in serials):
            raise ValueError("a report job names its serials")
        day, bucket = data.get("day"), data.get("bucket")
        if not isinstance(day, str) or not isinstance(bucket, str):
            raise ValueError("a report job names its day and bucket")
        return cls(day, bucket, parse_iso(str(data.get("plannedAt"))), tuple(serials))


@dataclass(frozen=True)
class PlanResult:
    day: str
    bucket: str
    due: int
    not_linked: int
    jobs: int


@dataclass
class JobResult:
    """Per-device outcomes of one job, and the DRS calls it made."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    slot_reports: int = 0
    slot_reports_failed: int = 0
    drs_calls: int = 0
    unfinished: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for value in self.outcomes.values() if value is outcome)


@dataclass(frozen=True)
class SlotUpkeep:
    """Slot upkeep done on the daily visit before the slots are reported (other concerns' services).

    ``settle_deliveries(serial, slots, now)`` infers the delivery of open orders whose estimated date
    has passed (DRS sends no delivered notification) and returns the slots it moved;
    ``refresh_forecast(slot, now)`` re-estimates a consumed slot's rate and reorder point from the
    day's snapshot and returns the updated slot (None: keep the one read); ``estimate_demand(slot,
    now)`` runs the daily demand estimation of a measured, subscribed slot (``services.estimation``:
    its planned reorder point). Reports use the results.
    ``reconcile_orders`` replaces ``settle_deliveries`` when given: overdue open orders are checked
    with ``getOrderInfo`` (DRS is the truth) instead of assumed delivered; ``resync_subscription``
    applies a ``subscriptionInfo`` read, made when DRS refused a slot report and at most weekly.
    """

    settle_deliveries: SettleDeliveries | None = None
    refresh_forecast: RefreshForecast | None = None
    estimate_demand: RefreshForecast | None = None
    reconcile_orders: ReconcileOrders | None = None
    resync_subscription: ResyncSubscription | None = None


def default_upkeep(repository: StateRepository, usage_store: UsageStore) -> SlotUpkeep:
    """The production upkeep: open orders checked with DRS and subscriptions re-read (order_truth),
    and the forecast refresh (consumption service)."""
    from drs_core.services import order_truth
    from drs_core.services.consumption import forecast_refresher
    from drs_core.services.estimation import demand_estimator

    store = order_truth.notification_store(repository)

    def reconcile(
        serial: str,
        slots: list[Slot],
        now: datetime,
        lookup: Callable[[str], OrderInfo],
        is_test: bool,
        model_id: str | None,
    ) -> list[Slot]:
        return order_truth.reconcile_orders(
            serial,
            slots,
            repository=repository,
            lookup=lookup,
            now=now,
            is_test_device=is_test,
            model_id=model_id,
        )

    def resync(
        serial: str, slots: list[Slot], info: SubscriptionInfo, now: datetime, model_id: str | None
    ) -> int:
        return order_truth.resync_subscription(serial, slots, info, store=store, now=now, model_id=model_id)

    return SlotUpkeep(
        refresh_forecast=forecast_refresher(usage_store),
        estimate_demand=demand_estimator(usage_store, repository),
        reconcile_orders=reconcile,
        resync_subscription=resync,
    )


# --- planner -------------------------------------------------------------------------------------


def plan_reports(
    scheduled_at: datetime,
    *,
    store: ReportStore,
    queue: ReportQueue,
    job_size: int = JOB_SIZE,
    page_size: int = INDEX_PAGE_ITEMS,
) -> PlanResult:
    """Enqueue report jobs for every linked device of the bucket due at ``scheduled_at``.

    Streams: one index page and one SQS batch in memory at a time. Metrics are emitted only once the
    whole bucket is enqueued, so a run that fails half-way and is retried does not count devices twice.
    ``page_size`` is the number of index items per Query page.
    """
    day, bucket = report_day(scheduled_at), bucket_for_hour(scheduled_at)
    counts: Counter[str] = Counter()

    def linked_serials() -> Iterator[str]:
        for serial, status in store.bucket_devices(bucket, page_size=page_size):
            if status == DeviceStatus.LINKED.value:
                counts["due"] += 1
                yield serial
            else:
                counts["notLinked"] += 1

    def job_bodies() -> Iterator[str]:
        for serials in _chunks(linked_serials(), job_size):
            yield ReportJob(day, bucket, scheduled_at, tuple(serials)).to_json()

    jobs = queue.send_all(job_bodies())
    result = PlanResult(day, bucket, counts["due"], counts["notLinked"], jobs)
    logger.info("report bucket planned", extra=asdict(result))
    emit_counts({"ReportsDue": result.due, "DevicesNotLinked": result.not_linked}, at=scheduled_at)
    metrics.add_metric(name="ReportJobsEnqueued", unit=MetricUnit.Count, value=jobs)
    return result


def plan_reports_once(
    scheduled_at: datetime,
    *,
    store: ReportStore,
    queue: ReportQueue,
    persistence: Any,
    lambda_context: Any = None,
    job_size: int = JOB_SIZE,
) -> PlanResult:
    """``plan_reports``, at most once per (report day, bucket) (Powertools idempotency, ``persistence``
    being its DynamoDB layer). A repeat returns the first run's result and enqueues nothing."""
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

    def repeated(response: Any, _record: Any) -> Any:
        # Called only when the stored result answers instead of a new plan.
        logger.info("report bucket already planned", extra=response)
        metrics.add_metric(name="ReportPlansRepeated", unit=MetricUnit.Count, value=1)
        return response

    config = IdempotencyConfig(expires_after_seconds=PLAN_IDEMPOTENCY_SECONDS, response_hook=repeated)
    if lambda_context is not None:
        # An attempt that times out releases its in-progress record when the invocation would have ended.
        config.register_lambda_context(lambda_context)

    @idempotent_function(data_keyword_argument="plan", persistence_store=persistence, config=config)
    def plan_bucket(plan: dict[str, str]) -> dict[str, Any]:
        return asdict(plan_reports(scheduled_at, store=store, queue=queue, job_size=job_size))

    key = {"day": report_day(scheduled_at), "bucket": bucket_for_hour(scheduled_at)}
    return PlanResult(**plan_bucket(plan=key))


# --- worker --------------------------------------------------------------------------------------


def run_job(
    job: ReportJob,
    *,
    store: ReportStore,
    repository: StateRepository,
    vault: TokenVault,
    drs: DrsClient,
    lease_seconds: float,
    time_left: Callable[[], float] | None = None,
    upkeep: SlotUpkeep | None = None,
) -> JobResult:
    """Report every device of ``job``; raise ``ReportJobIncomplete`` if any must be retried.

    ``lease_seconds`` must exceed the invocation's timeout; ``time_left`` (seconds) stops the job from
    starting a device it might not finish (the rest is retried). ``upkeep`` (none by default; the
    function passes ``default_upkeep``) runs on each device's slots before they are reported.
    """
    worker = _Worker(job, store, repository, vault, drs, lease_seconds, upkeep or SlotUpkeep())
    result = JobResult()
    for serial in job.serials:
        if time_left is not None and time_left() < DEVICE_TIME_RESERVE_SECONDS:
            result.unfinished.extend(s for s in job.serials if s not in result.outcomes)
            logger.warning("report job out of time", extra={"unfinished": len(result.unfinished)})
            break
        logger.append_keys(serial=serial)
        result.outcomes[serial] = worker.report(serial, result)
    logger.remove_keys(["serial", "slotId"])
    _emit_job_metrics(job, result)
    retry = [serial for serial, outcome in result.outcomes.items() if outcome is Outcome.RETRY]
    retry += [serial for serial in worker.slots_to_retry if serial not in retry]
    retry += result.unfinished
    if retry:
        raise ReportJobIncomplete(
            f"{len(retry)} device(s) of the report job are not done; the job will be retried",
            serials=tuple(retry),
        )
    return result


class _DeviceTokens:
    """The vault, keeping the device's access token across the few calls of one device visit: one
    token read and KMS decrypt per device-day, not per call. A forced refresh replaces it."""

    def __init__(self, vault: TokenVault) -> None:
        self._vault = vault
        self._token: str | None = None

    def access_token(self, serial: str, *, force_refresh: bool = False) -> str:
        if force_refresh or self._token is None:
            self._token = self._vault.access_token(serial, force_refresh=force_refresh)
        return self._token


class _Worker:
    """Reports the devices of one job (one lease owner per job run)."""

    def __init__(
        self,
        job: ReportJob,
        store: ReportStore,
        repository: StateRepository,
        vault: TokenVault,
        drs: DrsClient,
        lease_seconds: float,
        upkeep: SlotUpkeep,
    ) -> None:
        self.job = job
        self.store = store
        self.repository = repository
        self.vault = vault
        self.drs = drs
        self.lease = timedelta(seconds=lease_seconds)
        self.upkeep = upkeep
        # Slots whose daily estimation refreshed their forecast already: no second refresh.
        self.estimated: set[tuple[str, str]] = set()
        self.owner = uuid.uuid4().hex
        # Devices reported whose slots hit a retryable fault: the job is retried for them.
        self.slots_to_retry: list[str] = []

    def report(self, serial: str, result: JobResult) -> Outcome:
        now = default_clock().now()
        if not self.store.claim(serial, owner=self.owner, now=now, until=now + self.lease):
            return Outcome.RETRY
        try:
            snapshot = self.store.snapshot(serial)
            if snapshot is None or snapshot.device.status is not DeviceStatus.LINKED:
                logger.info(
                    "device not linked: report skipped",
                    extra={"status": snapshot.device.status.value if snapshot else None},
                )
                return Outcome.SKIPPED
            tokens = cast(TokenVault, _DeviceTokens(self.vault))
            return self._report_linked(snapshot, tokens, result)
        finally:
            self.store.release(serial, owner=self.owner)

    def _report_linked(self, snapshot: DeviceSnapshot, tokens: TokenVault, result: JobResult) -> Outcome:
        serial = snapshot.device.serial
        try:
            outcome = self._device_status(snapshot, tokens, result)
        except ReauthRequired:
            # call_drs already moved the device to REAUTH_REQUIRED (visible to the app).
            logger.warning("device needs re-authorisation: report skipped")
            return Outcome.SKIPPED
        except TokensMissing:
            logger.error("linked device has no stored tokens: report failed")
            return Outcome.FAILED
        except (DrsRetryableError, LwaRetryableError) as unavailable:
            # DRS or LWA still failing after the clients' own retries: the job is redelivered.
            logger.warning("device status not reported; will be retried", extra=_error_keys(unavailable))
            return Outcome.RETRY
        except Exception:
            # Anything unexpected: redelivered too, and parked in the DLQ if it never heals.
            logger.exception("device status not reported; will be retried")
            return Outcome.RETRY
        if outcome is Outcome.FAILED:
            return outcome
        refused_slots = result.slot_reports_failed
        # DRS is asked about orders and the subscription on the day's first visit only: a redelivered
        # job (a slot report to retry) must not repeat those calls.
        first = outcome is Outcome.SENT
        try:
            slots = self._settled(snapshot, tokens, result) if first else snapshot.slots
            for slot in slots:
                self._slot_status(serial, self._estimated(slot), snapshot, tokens, result)
            refused = result.slot_reports_failed > refused_slots
            if first or refused:
                self._subscription(snapshot, tokens, result, refused=refused)
        except ReauthRequired:
            logger.warning("device needs re-authorisation: slot reports skipped")
        except Exception as failure:
            # The device's own report stands (marked); the slots not marked yet are retried with the job.
            if isinstance(failure, DrsRetryableError | LwaRetryableError):
                logger.warning("slot status not reported; will be retried", extra=_error_keys(failure))
            else:
                logger.exception("slot status not reported; will be retried")
            self.slots_to_retry.append(serial)
        return outcome

    def _device_status(self, snapshot: DeviceSnapshot, tokens: TokenVault, result: JobResult) -> Outcome:
        serial, day = snapshot.device.serial, self.job.day
        if not device_report_due(snapshot.marks, day):
            return Outcome.ALREADY_SENT
        now = default_clock().now()
        active = most_recently_active(snapshot.device, snapshot.slots, now)
        try:
            result.drs_calls += 1
            call_drs(
                serial,
                lambda token: self.drs.device_status(token, active),
                vault=tokens,
                repository=self.repository,
            )
        except (DrsNotFound, DrsBadRequest) as refused:
            # call_drs turns token rejections into ReauthRequired: this is DRS refusing the request.
            logger.error("DRS refused the device status report", extra={"status": refused.status})
            return Outcome.FAILED
        if self.store.mark_device(serial, day=day, at=default_clock().now()):
            return Outcome.SENT
        # Only possible if our lease expired mid-call and another run reported too.
        logger.warning("device status of the day was recorded by another run", extra={"day": day})
        return Outcome.ALREADY_SENT

    def _settled(self, snapshot: DeviceSnapshot, tokens: TokenVault, result: JobResult) -> list[Slot]:
        """The slots, with overdue open orders checked with DRS (or, without ``reconcile_orders``, their
        delivery inferred), so reports carry the outcome."""
        serial, slots = snapshot.device.serial, snapshot.slots
        open_orders = [slot for slot in slots if slot.order.state in OPEN_ORDER_STATES]
        if not open_orders:
            return slots
        now = default_clock().now()
        if self.upkeep.reconcile_orders is not None:

            def lookup(instance_id: str) -> OrderInfo:
                result.drs_calls += 1
                return call_drs(
                    serial,
                    lambda token: self.drs.get_order_info(token, instance_id),
                    vault=tokens,
                    repository=self.repository,
                )

            try:
                settled = self.upkeep.reconcile_orders(
                    serial, open_orders, now, lookup, snapshot.device.is_test_device, snapshot.device.model_id
                )
            except (DrsRetryableError, LwaRetryableError, DrsBadRequest) as unavailable:
                # Asked again on the next daily visit; today's reports go out as they stand.
                logger.warning("open orders not checked with DRS", extra=_error_keys(unavailable))
                settled = []
        elif self.upkeep.settle_deliveries is not None:
            settled = self.upkeep.settle_deliveries(serial, open_orders, now)
        else:
            return slots
        moved = {slot.slot_id: slot for slot in settled}
        return [moved.get(slot.slot_id, slot) for slot in slots]

    def _estimated(self, slot: Slot) -> Slot:
        """The slot after its daily demand estimation; a failed one is logged and counted, and the
        slot keeps yesterday's plan (the report goes on: the estimate is an improvement, not a duty)."""
        if self.upkeep.estimate_demand is None or not slot.subscribed or slot.last_reading_at is None:
            return slot
        try:
            estimated = self.upkeep.estimate_demand(slot, default_clock().now())
        except Exception:
            logger.exception("demand estimation failed; the slot keeps its previous plan")
            metrics.add_metric(name="DemandEstimationFailed", unit=MetricUnit.Count, value=1)
            return slot
        if estimated is None:
            return slot
        self.estimated.add((slot.serial, slot.slot_id))
        return estimated

    def _subscription(
        self, snapshot: DeviceSnapshot, tokens: TokenVault, result: JobResult, *, refused: bool
    ) -> None:
        """Re-read ``subscriptionInfo`` when DRS refused a slot report, else when due (``order_truth``)."""
        from drs_core.services.order_truth import subscription_reread_due

        resync, device = self.upkeep.resync_subscription, snapshot.device
        now = default_clock().now()
        if resync is None or not (
            refused
            or subscription_reread_due(
                snapshot.marks.subscription_read_at, device.linked_at, snapshot.slots, now
            )
        ):
            return
        try:
            result.drs_calls += 1
            info = call_drs(
                device.serial,
                lambda token: self.drs.subscription_info(token, version=2),
                vault=tokens,
                repository=self.repository,
            )
        except (DrsRetryableError, LwaRetryableError, DrsBadRequest, DrsNotFound) as unavailable:
            logger.warning("subscription not re-read", extra=_error_keys(unavailable))
            return
        resync(device.serial, snapshot.slots, info, now, device.model_id)
        self.store.mark_subscription_read(device.serial, at=now)

    def _slot_status(
        self,
        serial: str,
        slot: Slot,
        snapshot: DeviceSnapshot,
        tokens: TokenVault,
        result: JobResult,
    ) -> None:
        day = self.job.day
        logger.append_keys(slotId=slot.slot_id)
        now = default_clock().now()
        mark = snapshot.marks.slot(slot.slot_id)
        if not slot_report_due(
            subscribed=slot.subscribed,
            last_use_at=slot.last_use_at,
            last_reading_at=slot.last_reading_at,
            mark=mark,
            day=day,
        ):
            return
        consumed = slot.last_use_at is not None and (mark.use_at is None or slot.last_use_at > mark.use_at)
        fresh = (serial, slot.slot_id) in self.estimated
        if consumed and self.upkeep.refresh_forecast is not None and not fresh:
            slot = self.upkeep.refresh_forecast(slot, now) or slot
        from drs_core.adapters.drs_client import SlotStatusReport

        figures = slot_figures(slot, now=now)
        report = SlotStatusReport(
            expected_replenishment_date=figures.expected_replenishment_date,
            remaining_quantity=figures.remaining_quantity,
            original_quantity=figures.original_quantity,
            total_quantity_on_hand=figures.total_quantity_on_hand,
            last_use_date=figures.last_use_date,
        )
        try:
            result.drs_calls += 1
            call_drs(
                serial,
                lambda token: self.drs.slot_status(token, slot.slot_id, report),
                vault=tokens,
                repository=self.repository,
            )
        except (DrsNotFound, DrsBadRequest) as refused:
            # A slot DRS does not know (any more) or figures it rejects: retrying changes nothing.
            logger.error("DRS refused the slot status report", extra={"status": refused.status})
            result.slot_reports_failed += 1
            return
        if self.store.mark_slot(serial, slot.slot_id, day=day, use_at=slot.last_use_at, at=now):
            result.slot_reports += 1
        else:
            logger.warning("slot status of the day was recorded by another run", extra={"day": day})


# --- metrics -------------------------------------------------------------------------------------


def emit_counts(counts: Mapping[str, float], *, at: datetime) -> None:
    """One EMF record of counters timestamped ``at`` (the plan's time), in the process's namespace and
    ``service`` dimension, so they line up in CloudWatch with the plan that made the work due."""
    provider = AmazonCloudWatchEMFProvider(namespace=NAMESPACE)
    for name, value in counts.items():
        provider.add_metric(name=name, unit=MetricUnit.Count, value=value)
    provider.set_timestamp(at)
    provider.flush_metrics()


def _emit_job_metrics(job: ReportJob, result: JobResult) -> None:
    counts: dict[str, float] = {outcome.value: result.count(outcome) for outcome in Outcome}
    counts["ReportsRetried"] += len(result.unfinished)
    counts["SlotReportsSent"] = result.slot_reports
    counts["SlotReportsFailed"] = result.slot_reports_failed
    counts["DrsReportCalls"] = result.drs_calls
    emit_counts(counts, at=job.planned_at)
    metrics.add_metric(name="ReportJobsProcessed", unit=MetricUnit.Count, value=1)


def _error_keys(error: Exception) -> dict[str, Any]:
    return {"errorType": type(error).__name__, "status": getattr(error, "status", None)}


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
