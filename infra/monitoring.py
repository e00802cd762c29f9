"""Monitoring (docs/architecture.md §1): the operations dashboard, the alarms the concerns do not build
themselves, and the alarm topic as the action of every alarm of the stack.

Every custom metric below is one the code emits, spelled as it emits it: Powertools EMF in namespace
``DrsReplenishment``, and Powertools adds the dimension ``service`` (the function's folder, from
``POWERTOOLS_SERVICE_NAME``) to every record, single metrics included. A metric selected without that
dimension, or with another function's name in it, graphs nothing. Where several functions emit one
metric, or its other dimensions are open-ended (DRS operation, notification type and outcome), the
dashboard uses a ``SEARCH`` over the exact dimension set instead of a list that could drift.
AWS metrics: API Gateway HTTP API (``ApiId`` + ``Stage``), Lambda (``FunctionName``), SQS (``QueueName``).

Context: ``reauthAlarmThreshold`` (default 20 devices needing re-authorisation in 15 minutes).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.api import Api
from infra.constants import METRICS_NAMESPACE
from infra.functions import ReplenishmentFunction
from infra.notifications import Notifications
from infra.ordering import Ordering
from infra.reporting import Reporting

PERIOD = Duration.minutes(5)
WIDTH = 24
HEIGHT = 6

# The DRS client's per-call record (drs_core/adapters/drs_client.py ``_count_call``).
DRS_CALL_METRICS = ("DrsCalls", "DrsErrors", "DrsLatency")
DRS_CALL_DIMENSIONS = ("Operation", "service")
# The notification function's per-record count (drs_core/services/notifications.py ``count_outcome``).
NOTIFICATION_METRIC = "Notifications"
NOTIFICATION_DIMENSIONS = ("outcome", "service", "type")
# Functions that call DRS with a device's tokens (``call_drs``): the ones that can find a device's
# authorisation revoked and count ``ReauthRequired``.
REAUTH_SERVICES = ("companion_api", "reorder_decision", "report_worker")
# A device needs re-authorisation when LWA or DRS rejects its tokens for good. Customers revoking access
# one by one make a few a day across a fleet (a DRS deregistration arrives as a notification instead);
# this many within 15 minutes means tokens are being rejected wholesale (security profile disabled or
# changed, a DRS-side fault) and every affected customer must link again: worth waking someone.
REAUTH_SPIKE_THRESHOLD = 20
REAUTH_SPIKE_PERIOD = Duration.minutes(15)
# API 5xx are ours (function errors and timeouts, integration failures); devices retry, so a short blip
# is absorbed. 1 % of at least 20 requests, in 2 of 3 five-minute periods, is a systemic fault.
API_5XX_PERCENT = 1
API_5XX_MIN_REQUESTS = 20


@dataclass(frozen=True)
class ErrorBudget:
    """A function's error-rate alarm: ``percent`` of invocations failed, in ``datapoints`` of the last
    ``periods`` periods of ``period``; periods with fewer than ``min_invocations`` never count."""

    percent: float
    min_invocations: int
    period: Duration
    datapoints: int
    periods: int


# API functions' errors are 500s to devices and the app; the queue and stream consumers report failed
# records in their batch responses, so an invocation error is an unhandled fault (a bug, an AWS outage).
# 5 % of at least 10 invocations, in 2 of 3 five-minute periods: one DRS blip or slow cold start stays
# quiet, a sustained fault alarms within 15 minutes.
DEFAULT_ERROR_BUDGET = ErrorBudget(percent=5, min_invocations=10, period=PERIOD, datapoints=2, periods=3)
ERROR_BUDGETS = {
    # The planner runs once an hour (plus up to 3 Scheduler retries): alarm when every run of an hour
    # failed, i.e. a report bucket went unplanned (the coverage alarm would see it only the next day).
    "report_planner": ErrorBudget(
        percent=100, min_invocations=1, period=Duration.hours(1), datapoints=1, periods=1
    ),
}


def app_metric(
    name: str,
    service: str,
    *,
    label: str | None = None,
    statistic: str = "Sum",
    period: Duration = PERIOD,
) -> cloudwatch.Metric:
    """A metric one function emits through Powertools: namespace and ``service`` as Powertools sets them."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service},
        statistic=statistic,
        period=period,
        label=label or name,
    )


def search(
    name: str, dimensions: tuple[str, ...], *, label: str, statistic: str = "Sum"
) -> cloudwatch.MathExpression:
    """Every series of ``name`` with exactly ``dimensions`` (one line per combination of their values);
    ``label`` may use ``${PROP('Dim.<name>')}``."""
    schema = ",".join((METRICS_NAMESPACE, *sorted(dimensions)))
    seconds = int(PERIOD.to_seconds())
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{{{schema}}} MetricName=\"{name}\"', '{statistic}', {seconds})",
        using_metrics={},
        label=label,
        period=PERIOD,
    )


class Monitoring(Construct):
    """``dashboard`` and ``alarms`` (every alarm of the stack by name, each notifying ``alarm_action``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api: Api,
        ordering: Ordering,
        notifications: Notifications,
        reporting: Reporting,
        alarm_action: cloudwatch.IAlarmAction,
    ) -> None:
        super().__init__(scope, construct_id)
        self._api = api
        self._notifications = notifications
        self._reporting = reporting
        self._alarm_action = alarm_action
        # Every function of the stack, found rather than listed: a new one cannot miss its alarm.
        self.functions = [
            node for node in Stack.of(self).node.find_all() if isinstance(node, ReplenishmentFunction)
        ]
        self.dead_letter_queues: dict[str, sqs.IQueue] = {
            "Reorder decisions": ordering.dead_letter_queue,
            "DRS notifications": notifications.dead_letter_queue,
            "Report jobs": reporting.dead_letter_queue,
            "Report plans": reporting.planner_dead_letter_queue,
        }
        self.reauth_threshold = int(
            self.node.try_get_context("reauthAlarmThreshold") or REAUTH_SPIKE_THRESHOLD
        )
        # The concerns' own alarms (DLQ depth of each DLQ, report coverage); the notifications construct
        # already wired the action into its DLQ alarm.
        for alarm in (
            ordering.dlq_alarm,
            reporting.dlq_alarm,
            reporting.planner_dlq_alarm,
            reporting.coverage_alarm,
        ):
            alarm.add_alarm_action(alarm_action)
        self.function_alarms = {fn.name: self._build_error_rate_alarm(fn) for fn in self.functions}
        self.api_alarm = self._build_api_5xx_alarm()
        self.reauth_alarm = self._build_reauth_alarm()
        # Every alarm of the stack, by the name operators see in a notification: "<stack>-<what>".
        self.alarms: dict[str, cloudwatch.Alarm] = {
            "ReorderDlqDepth": ordering.dlq_alarm,
            "NotificationDlqDepth": notifications.dlq_alarm,
            "ReportJobsDlqDepth": reporting.dlq_alarm,
            "ReportPlansDlqDepth": reporting.planner_dlq_alarm,
            "ReportCoverage": reporting.coverage_alarm,
            "Api5xxRate": self.api_alarm,
            "ReauthSpike": self.reauth_alarm,
            **{f"{_pascal(name)}ErrorRate": alarm for name, alarm in self.function_alarms.items()},
        }
        for what, alarm in self.alarms.items():
            alarm.node.default_child.alarm_name = self._alarm_name(what)  # type: ignore[union-attr]
        self.dashboard = self._build_dashboard()

    # --- alarms --------------------------------------------------------------------------------------

    def _alarm_name(self, what: str) -> str:
        return f"{Stack.of(self).stack_name}-{what}"

    def _alarm(self, construct_id: str, **props: object) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            **props,  # type: ignore[arg-type]
        )
        alarm.add_alarm_action(self._alarm_action)
        return alarm

    def _build_error_rate_alarm(self, fn: ReplenishmentFunction) -> cloudwatch.Alarm:
        budget = ERROR_BUDGETS.get(fn.name, DEFAULT_ERROR_BUDGET)
        rate = cloudwatch.MathExpression(
            expression=(
                f"IF(invocations >= {budget.min_invocations}, 100 * FILL(errors, 0) / invocations, 0)"
            ),
            using_metrics={
                "errors": fn.function.metric_errors(period=budget.period, statistic="Sum"),
                "invocations": fn.function.metric_invocations(period=budget.period, statistic="Sum"),
            },
            label=f"{fn.name} error rate (%)",
            period=budget.period,
        )
        return self._alarm(
            f"{_pascal(fn.name)}ErrorRate",
            alarm_description=(
                f"The {fn.name} function failed {budget.percent:g} % or more of its invocations "
                f"({budget.datapoints} of {budget.periods} periods of {budget.period.to_minutes():g} min)"
            ),
            metric=rate,
            threshold=budget.percent,
            evaluation_periods=budget.periods,
            datapoints_to_alarm=budget.datapoints,
        )

    def _build_api_5xx_alarm(self) -> cloudwatch.Alarm:
        stage = self._api.stage
        rate = cloudwatch.MathExpression(
            expression=(f"IF(requests >= {API_5XX_MIN_REQUESTS}, 100 * FILL(failures, 0) / requests, 0)"),
            using_metrics={
                "failures": stage.metric_server_error(period=PERIOD, statistic="Sum"),
                "requests": stage.metric_count(period=PERIOD, statistic="Sum"),
            },
            label="API 5xx rate (%)",
            period=PERIOD,
        )
        return self._alarm(
            "Api5xxRate",
            alarm_description=(
                f"{API_5XX_PERCENT} % or more of API requests answered 5xx in 2 of 3 five-minute periods"
            ),
            metric=rate,
            threshold=API_5XX_PERCENT,
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )

    def _build_reauth_alarm(self) -> cloudwatch.Alarm:
        counts = {
            f"reauth{index}": app_metric(
                "ReauthRequired", service, period=REAUTH_SPIKE_PERIOD, statistic="Sum"
            )
            for index, service in enumerate(REAUTH_SERVICES)
        }
        total = cloudwatch.MathExpression(
            expression=" + ".join(f"FILL({name}, 0)" for name in counts),
            using_metrics=counts,
            label="Devices newly needing re-authorisation",
            period=REAUTH_SPIKE_PERIOD,
        )
        return self._alarm(
            "ReauthSpike",
            alarm_description=(
                f"{self.reauth_threshold} or more devices needed re-authorisation within 15 minutes: LWA "
                "or DRS is rejecting tokens wholesale (security profile, client secret, DRS fault?)"
            ),
            metric=total,
            threshold=self.reauth_threshold,
            evaluation_periods=1,
        )

    # --- dashboard -----------------------------------------------------------------------------------

    def _build_dashboard(self) -> cloudwatch.Dashboard:
        stack = Stack.of(self)
        return cloudwatch.Dashboard(
            self,
            "Dashboard",
            # Dashboards are global to the account: the region keeps two deployments of a stage apart.
            dashboard_name=f"{stack.stack_name}-{Aws.REGION}",
            default_interval=Duration.days(1),
            widgets=[
                [_heading("API: companion app and devices")],
                self._api_row(),
                [_heading("Usage, reorders and DRS")],
                self._ordering_row(),
                self._drs_row(),
                [_heading("Notifications, reporting, queues")],
                self._notifications_row(),
                self._reporting_row(),
                [_heading("Functions and alarms")],
                self._functions_row(),
                [
                    cloudwatch.AlarmStatusWidget(
                        alarms=self._alarms_by_arn(), title="Alarms", width=WIDTH, height=HEIGHT
                    )
                ],
            ],
        )

    def _alarms_by_arn(self) -> list[cloudwatch.IAlarm]:
        """The alarms, named by ARN rather than referenced: the dashboard needs no alarm to exist first
        (and moto, which the sandbox deploys this template into, creates no alarms)."""
        stack = Stack.of(self)
        return [
            cloudwatch.Alarm.from_alarm_arn(
                self,
                f"{what}Status",
                stack.format_arn(
                    service="cloudwatch",
                    resource="alarm",
                    resource_name=self._alarm_name(what),
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                ),
            )
            for what in self.alarms
        ]

    def _api_row(self) -> list[cloudwatch.IWidget]:
        stage = self._api.stage
        return [
            _graph(
                "API requests",
                [stage.metric_count(period=PERIOD, statistic="Sum", label="Requests")],
            ),
            _graph(
                "API latency (ms)",
                [
                    stage.metric_latency(period=PERIOD, statistic="p50", label="Latency p50"),
                    stage.metric_latency(period=PERIOD, statistic="p99", label="Latency p99"),
                    stage.metric_integration_latency(
                        period=PERIOD, statistic="p99", label="Integration latency p99"
                    ),
                ],
            ),
            _graph(
                "API 4xx / 5xx",
                [
                    stage.metric_client_error(period=PERIOD, statistic="Sum", label="4xx"),
                    stage.metric_server_error(period=PERIOD, statistic="Sum", label="5xx"),
                    app_metric("DeviceAuthDenied", "device_authorizer", label="Device credential denied"),
                    app_metric("CompanionAuthDenied", "companion_authorizer", label="App token denied"),
                ],
            ),
        ]

    def _ordering_row(self) -> list[cloudwatch.IWidget]:
        return [
            _graph(
                "Readings ingested",
                [
                    app_metric("ReadingsApplied", "usage_ingestion", label="Applied"),
                    app_metric("ReadingsStale", "usage_ingestion", label="Stale (older than the slot)"),
                    app_metric("ReadingExactWrites", "usage_ingestion", label="Exact-write fallbacks"),
                    app_metric("ReorderDueRaised", "usage_ingestion", label="Reorder due raised"),
                ],
            ),
            _graph(
                "Reorders placed / adopted",
                [
                    app_metric("ReorderPlaced", "reorder_decision", label="Placed"),
                    app_metric("ReorderAdopted", "reorder_decision", label="Adopted (ORDER_INPROGRESS)"),
                    app_metric("ReorderNotNeeded", "reorder_decision", label="Not needed any more"),
                    app_metric("ReorderClaimedElsewhere", "reorder_decision", label="Claimed elsewhere"),
                ],
            ),
            _graph(
                "Reorders failed",
                [
                    app_metric("ReorderRefusedByDrs", "reorder_decision", label="Refused by DRS"),
                    app_metric("ReorderReauthRequired", "reorder_decision", label="Device needs re-auth"),
                    app_metric("ReorderHeld", "reorder_decision", label="Held (device not linked)"),
                    app_metric("ReplenishRetried", "reorder_decision", label="Retried (DRS/LWA unavailable)"),
                ],
            ),
        ]

    def _drs_row(self) -> list[cloudwatch.IWidget]:
        by_operation = "${PROP('Dim.Operation')} (${PROP('Dim.service')})"
        quarter = WIDTH // 4
        return [
            _graph(
                "DRS calls per endpoint",
                [search("DrsCalls", DRS_CALL_DIMENSIONS, label=by_operation)],
                width=quarter,
            ),
            _graph(
                "DRS errors per endpoint (no 2xx after retries)",
                [search("DrsErrors", DRS_CALL_DIMENSIONS, label=by_operation)],
                width=quarter,
            ),
            _graph(
                "DRS latency p99 per endpoint (ms)",
                [search("DrsLatency", DRS_CALL_DIMENSIONS, label=by_operation, statistic="p99")],
                width=quarter,
            ),
            _graph(
                "Token refresh failures: devices needing re-authorisation",
                [
                    search(
                        "ReauthRequired",
                        ("service",),
                        label="ReauthRequired (${PROP('Dim.service')})",
                    ),
                    app_metric("LinkCodeRejected", "companion_api", label="Link code rejected by LWA"),
                    app_metric("LinkResumed", "companion_api", label="Link resumed from held tokens"),
                ],
                width=quarter,
            ),
        ]

    def _notifications_row(self) -> list[cloudwatch.IWidget]:
        queues = self._notifications
        return [
            _graph(
                "DRS notifications by type and outcome",
                [
                    search(
                        NOTIFICATION_METRIC,
                        NOTIFICATION_DIMENSIONS,
                        label="${PROP('Dim.type')} ${PROP('Dim.outcome')}",
                    ),
                    app_metric(
                        "NotificationForUnknownDevice", "notifications", label="For an unknown device"
                    ),
                ],
            ),
            _graph(
                "Dead-letter queue depths (messages)",
                [
                    queue.metric_approximate_number_of_messages_visible(
                        period=PERIOD, statistic="Maximum", label=name
                    )
                    for name, queue in self.dead_letter_queues.items()
                ],
            ),
            _graph(
                "Queue backlog",
                [
                    queues.queue.metric_approximate_age_of_oldest_message(
                        period=PERIOD, statistic="Maximum", label="Notifications: oldest message (s)"
                    ),
                    self._reporting.queue.metric_approximate_number_of_messages_visible(
                        period=PERIOD, statistic="Maximum", label="Report jobs waiting"
                    ),
                ],
            ),
        ]

    def _reporting_row(self) -> list[cloudwatch.IWidget]:
        day = Duration.days(1)
        due = app_metric("ReportsDue", "report_planner", period=day)
        sent = app_metric("ReportsSent", "report_worker", period=day)
        skipped = app_metric("ReportsSkipped", "report_worker", period=day)
        return [
            _graph(
                "Report coverage per UTC day (deviceStatus)",
                [
                    due.with_(label="Due"),
                    sent.with_(label="Sent"),
                    skipped.with_(label="Skipped (unlinked / re-auth)"),
                    cloudwatch.MathExpression(
                        expression="FILL(due, 0) - FILL(sent, 0) - FILL(skipped, 0)",
                        using_metrics={"due": due, "sent": sent, "skipped": skipped},
                        label="Not reported (alarm above 0)",
                        period=day,
                    ),
                ],
                period=day,
            ),
            _graph(
                "Report work",
                [
                    app_metric("ReportsAlreadySent", "report_worker", label="deviceStatus already sent"),
                    app_metric("ReportsFailed", "report_worker", label="deviceStatus refused"),
                    app_metric("ReportsRetried", "report_worker", label="Devices retried"),
                    app_metric("SlotReportsSent", "report_worker", label="slotStatus sent"),
                    app_metric("SlotReportsFailed", "report_worker", label="slotStatus refused"),
                    app_metric("ReportJobsEnqueued", "report_planner", label="Jobs enqueued"),
                ],
            ),
            _graph(
                "Delivery and lifecycle",
                [
                    app_metric("DeviceLinked", "companion_api", label="Devices linked"),
                    app_metric("DeviceUnlinked", "companion_api", label="Devices unlinked"),
                    search(
                        "DeliveryInferred", ("service",), label="Delivery inferred (${PROP('Dim.service')})"
                    ),
                ],
            ),
        ]

    def _functions_row(self) -> list[cloudwatch.IWidget]:
        return [
            _graph(
                "Function errors",
                [
                    fn.function.metric_errors(period=PERIOD, statistic="Sum", label=fn.name)
                    for fn in self.functions
                ],
            ),
            _graph(
                "Function duration p99 (ms)",
                [
                    fn.function.metric_duration(period=PERIOD, statistic="p99", label=fn.name)
                    for fn in self.functions
                ],
            ),
            _graph(
                "Function throttles",
                [
                    fn.function.metric_throttles(period=PERIOD, statistic="Sum", label=fn.name)
                    for fn in self.functions
                ],
            ),
        ]


def _graph(
    title: str,
    metrics: list[cloudwatch.IMetric],
    *,
    period: Duration = PERIOD,
    width: int = WIDTH // 3,
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=metrics, width=width, height=HEIGHT, period=period)


def _heading(text: str) -> cloudwatch.TextWidget:
    return cloudwatch.TextWidget(markdown=f"### {text}", width=WIDTH, height=1)


def _pascal(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))
