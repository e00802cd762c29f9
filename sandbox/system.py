"""The embedded system: the whole product on one machine, on one simulated clock.

``EmbeddedSystem`` deploys the CDK app's template into a local moto server, starts the DRS + LWA
simulator (publishing its notifications to the local SNS topic), loads every function of the template
in-process, serves the HTTP API through the local gateway, and plays the event source mappings and
schedules with the pumps. Backend and simulator share one ``ManualClock``: ``advance()`` moves it the
way ``POST /__sim/clock`` does and lets everything that became due happen.

Two ways to run it:
- stepped (tests, the demo): nothing runs in the background; ``advance()`` and ``drain()`` move events
  through the pumps in the caller's thread, so a scenario is deterministic;
- background (``make sandbox``): one thread keeps the pumps draining and fires schedules whenever the
  clock moved (someone called ``POST /__sim/clock``).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from drs_core.clock import Clock, ManualClock, default_clock, use_clock
from sandbox.simulator import SimulatorServer
from sandbox.simulator.control import SimulatorControl
from sandbox.simulator.state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

from .aws import LocalAws, Resolver, Resources
from .devices import provision_device, registry_of
from .functions import FUNCTIONS_DIR, FunctionRunner, Invocation
from .gateway import Gateway
from .pumps import Pump, ScheduleRunner, iter_pumps
from .template import SandboxTemplate, Template, load_sandbox_template
from .webapp import WebAppFiles

logger = logging.getLogger(__name__)

DEFAULT_GATEWAY_PORT = 8080
DEFAULT_SIMULATOR_PORT = 8090
# A drain that is still busy after this many rounds is stuck (e.g. a stream batch retried forever).
MAX_DRAIN_ROUNDS = 500
_BACKGROUND_IDLE_SECONDS = 0.1


class SnsPublisher:
    """Hands each simulator notification to the local SNS topic, as DRS publishes to the maker's topic.

    moto then delivers it to the subscribed queue in SNS's envelope. moto writes its own ``MessageId``
    and wall-clock ``Timestamp`` into that envelope; the simulator's notification (``notificationId``,
    ``notificationTime``) travels unchanged inside ``Message``.
    """

    def __init__(self, sns_client: Any, topic_arn: str) -> None:
        self._sns = sns_client
        self.topic_arn = topic_arn
        self._lock = threading.Lock()

    def publish(self, envelope: dict[str, Any]) -> None:
        attributes = {
            name: {"DataType": value.get("Type", "String"), "StringValue": str(value.get("Value", ""))}
            for name, value in (envelope.get("MessageAttributes") or {}).items()
        }
        with self._lock:  # keeps delivery order when several simulator threads publish
            self._sns.publish(
                TopicArn=self.topic_arn, Message=envelope["Message"], MessageAttributes=attributes
            )


class EmbeddedSystem:
    """Local AWS + simulator + functions + gateway + pumps, on one clock. A context manager too."""

    def __init__(
        self,
        *,
        template: Template | SandboxTemplate | None = None,
        functions_dir: Path = FUNCTIONS_DIR,
        gateway_port: int = DEFAULT_GATEWAY_PORT,
        simulator_port: int = DEFAULT_SIMULATOR_PORT,
        aws_port: int = 0,
        start_time: datetime | None = None,
        environment: dict[str, str] | None = None,
        background: bool = False,
        function_log_level: str | None = "WARNING",
        stack_name: str = "DrsReplenishment-dev",
    ) -> None:
        self._template_source = template
        self.functions_dir = functions_dir
        self.gateway_port = gateway_port
        self.simulator_port = simulator_port
        self.background = background
        self.function_log_level = function_log_level
        self.stack_name = stack_name
        self.extra_environment = dict(environment or {})
        self.clock = ManualClock(start_time)
        self.template: SandboxTemplate | None = None
        self.aws = LocalAws(port=aws_port)
        self.resources: Resources | None = None
        self.simulator: SimulatorServer | None = None
        self.control: SimulatorControl | None = None
        self.runner: FunctionRunner | None = None
        self.gateway: Gateway | None = None
        self.pumps: list[Pump] = []
        self.schedules: ScheduleRunner | None = None
        self._previous_clock: Clock | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drain_lock = threading.RLock()

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> EmbeddedSystem:
        """Assemble and start everything; on failure, stop what already started and raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        # Metrics are disabled here (no CloudWatch); their simulated timestamps, days away from the wall
        # clock, would otherwise warn on every report.
        for noise in ("This metric doesn't meet the requirements", "No application metrics to publish"):
            warnings.filterwarnings("ignore", message=noise, category=UserWarning)
        source = self._template_source
        self.template = source if isinstance(source, SandboxTemplate) else load_sandbox_template(source)
        self.aws.start()
        self.resources = self.aws.deploy(
            self.template, self.stack_name, lwa_client_secret=DEFAULT_CLIENT_SECRET
        )
        self._previous_clock = default_clock()
        use_clock(self.clock)
        topic = self.resources.notification_topic_arn
        publisher = SnsPublisher(self.resources.client("sns"), topic) if topic else None
        if topic is None:
            logger.warning("the template has no SNS topic: DRS notifications are recorded, not delivered")
        self.simulator = SimulatorServer(
            host="127.0.0.1",
            port=self.simulator_port,
            clock=self.clock,
            publisher=publisher,
            **({"topic_arn": topic} if topic else {}),
        ).start()
        self.control = SimulatorControl(self.simulator.url)
        overrides = {
            "DRS_ENDPOINT": self.simulator.url,
            "LWA_ENDPOINT": self.simulator.url,
            "DRS_WEB_ENDPOINT": self.simulator.url,
            "LWA_CLIENT_ID": DEFAULT_CLIENT_ID,
            # The local companion app's own scheme: the settings page may return to myapp://…
            "SETTINGS_EXIT_SCHEMES": "myapp",
            # ... and the web app it serves on http://127.0.0.1 (never allowed in a deployed stage).
            "SETTINGS_EXIT_LOOPBACK": "true",
            # Metrics would print one EMF document per invocation to stdout: CloudWatch is not here.
            "POWERTOOLS_METRICS_DISABLED": "true",
            **self.extra_environment,
        }
        self.runner = FunctionRunner(
            self.template,
            self.resources.functions,
            functions_dir=self.functions_dir,
            overrides=overrides,
            log_level=self.function_log_level,
        ).load()
        self.gateway = Gateway(
            self.template,
            self.runner,
            self.clock,
            port=self.gateway_port,
            region=self.resources.region,
            resources_json=self.resources_json,
            provision_device=self.provision_device,
            webapp=WebAppFiles(simulator_url=self.simulator.url, client_id=DEFAULT_CLIENT_ID),
        ).start()
        self.pumps = list(iter_pumps(self.runner, self.resources, self.clock))
        self.schedules = ScheduleRunner(
            self.template.schedules,
            self.runner,
            self.resources,
            Resolver(self.resources, self.template),
            start=self.clock.now(),
        )
        if self.background:
            self._stop.clear()
            self._thread = threading.Thread(target=self._background_loop, name="sandbox-pumps", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop everything started, restore the process clock and environment (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.runner is not None:
            self.runner.close()
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
        if self._previous_clock is not None:
            use_clock(self._previous_clock)
            self._previous_clock = None
        self.aws.stop()

    def __enter__(self) -> EmbeddedSystem:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------------------- what a scenario uses

    @property
    def gateway_url(self) -> str:
        return self._require(self.gateway).url

    @property
    def simulator_url(self) -> str:
        return self._require(self.simulator).url

    @property
    def invocations(self) -> dict[str, int]:
        """Invocations so far per function (folder name)."""
        return dict(self._require(self.runner).invocations)

    @property
    def errors(self) -> dict[str, int]:
        """Invocations that raised, per function."""
        return dict(self._require(self.runner).errors)

    @property
    def http_statuses(self) -> dict[int, int]:
        """Answers the gateway gave, per status code (e.g. to check that no 5xx happened)."""
        return dict(self._require(self.gateway).statuses)

    def resources_json(self) -> dict[str, Any]:
        """``GET /__sandbox/resources``, plus the local URLs."""
        body = self._require(self.resources).as_json()
        if self.gateway is not None and self.simulator is not None:
            body.update({"gatewayUrl": self.gateway.url, "simulatorUrl": self.simulator.url})
        return body

    def provision_device(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """``POST /__sandbox/devices`` (``sandbox.devices``): register a manufactured device."""
        return provision_device(registry_of(self._require(self.resources)), self.clock, body)

    def invoke(self, function: str, event: Any) -> Invocation:
        """Invoke one function directly (folder name or logical id)."""
        return self._require(self.runner).invoke(function, event)

    def on_invocation(self, listener: Callable[[Invocation], None]) -> None:
        """Call ``listener`` after every function invocation (a scenario's timeline, a test's wait)."""
        self._require(self.runner).on_invocation.append(listener)

    def pump_stats(self) -> dict[str, dict[str, int]]:
        """Per pump (``<function><-sqs|stream``): received, filtered out, invocations, retried, discarded."""
        return {pump.name: dict(vars(pump.stats)) for pump in self.pumps}

    def advance(self, seconds: float) -> datetime:
        """Move the simulated clock as ``POST /__sim/clock`` does, and let what became due happen.

        The clock stops at every schedule occurrence on the way (each fires at its own time), and after
        each stop the pumps drain, so a 30-day advance runs every hourly planner at its hour.
        """
        simulator = self._require(self.simulator).simulator
        schedules = self._require(self.schedules)
        target = self.clock.now() + timedelta(seconds=seconds)
        while True:
            due = schedules.next_due()
            stop_at = min(target, due) if due is not None else target
            # Datetime arithmetic (whole microseconds): the clock lands exactly on each occurrence.
            simulator.advance(max(0.0, (stop_at - self.clock.now()).total_seconds()))
            self.drain()
            if stop_at >= target:
                return self.clock.now()

    def drain(self, max_rounds: int = MAX_DRAIN_ROUNDS) -> int:
        """Fire the schedules due now, then run every pump until a whole round handles nothing."""
        with self._drain_lock:
            self._require(self.simulator).simulator.fire_due()
            handled = self._require(self.schedules).fire_due(self.clock.now())
            for _ in range(max_rounds):
                round_handled = sum(pump.run_once() for pump in self.pumps)
                if round_handled == 0:
                    return handled
                handled += round_handled
            logger.warning("the pumps did not settle in %d rounds: %s", max_rounds, self.pump_stats())
            return handled

    def queue_depths(self) -> dict[str, int]:
        """Messages per queue (visible + in flight), by the queue's friendly name."""
        from .template import friendly_name

        resources = self._require(self.resources)
        sqs = resources.client("sqs")
        depths = {}
        for queue in resources.queues.values():
            attrs = sqs.get_queue_attributes(
                QueueUrl=queue.url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            depths[friendly_name(queue.logical_id)] = int(attrs["ApproximateNumberOfMessages"]) + int(
                attrs["ApproximateNumberOfMessagesNotVisible"]
            )
        return depths

    def dlq_messages(self) -> dict[str, list[dict[str, Any]]]:
        """What sits in each dead-letter queue (redrive targets and on-failure destinations), unconsumed.

        Messages are read and made visible again at once, so a second call sees them too.
        """
        from .template import friendly_name

        resources = self._require(self.resources)
        template = self._require(self.template)
        sqs = resources.client("sqs")
        targets = {q.logical_id for q in resources.dead_letter_queues}
        targets |= {m.on_failure for m in template.mappings if m.on_failure in resources.queues}
        found: dict[str, list[dict[str, Any]]] = {}
        for lid in sorted(t for t in targets if t):
            queue = resources.queues[lid]
            messages: list[dict[str, Any]] = []
            while True:
                batch = sqs.receive_message(
                    QueueUrl=queue.url,
                    MaxNumberOfMessages=10,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                    VisibilityTimeout=60,  # hidden while paging, so each is read once
                ).get("Messages", [])
                if not batch:
                    break
                messages.extend(batch)
            for start in range(0, len(messages), 10):
                sqs.change_message_visibility_batch(
                    QueueUrl=queue.url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                        for i, m in enumerate(messages[start : start + 10])
                    ],
                )
            found[friendly_name(lid)] = [
                {"messageId": m["MessageId"], "body": m["Body"], "attributes": m.get("Attributes", {})}
                for m in messages
            ]
        return found

    def summary(self) -> dict[str, Any]:
        """Counters a scenario prints or checks at the end."""
        runner = self._require(self.runner)
        return {
            "invocations": dict(runner.invocations),
            "errors": dict(runner.errors),
            "timeouts": dict(runner.timeouts),
            "metrics": dict(runner.metrics),
            "httpStatuses": self.http_statuses,
            "pumps": self.pump_stats(),
            "scheduleFirings": dict(Counter(f.schedule for f in self._require(self.schedules).firings)),
        }

    # ------------------------------------------------------------------------------------ background

    def _background_loop(self) -> None:
        """Keep draining; fire schedules when the clock moved (``POST /__sim/clock``)."""
        while not self._stop.is_set():
            try:
                busy = self.drain()
            except Exception:
                logger.exception("a pump round failed; continuing")
                busy = 0
            if not busy:
                self._stop.wait(_BACKGROUND_IDLE_SECONDS)

    @staticmethod
    def _require(value: Any) -> Any:
        if value is None:
            raise RuntimeError("the embedded system is not started")
        return value
