"""Local AWS: a moto server on loopback, holding the CDK app's stack deployed through CloudFormation.

Measured with moto 5.2 (docs/architecture.md §7): ``create_stack`` creates the KMS key, the tables (streams,
GSIs, TTL), the queues with their redrive policies, the topic, the IAM roles, the Lambda functions (as
records: moto cannot run them) and the alarms and dashboard. It skips, with a warning, what it does not
support (``AWS::ApiGatewayV2::*``, ``AWS::Scheduler::*``, ``AWS::SNS::TopicPolicy``) and creates no
``AWS::SNS::Subscription``: this module subscribes those itself. The event source mappings are left out
of the stack (``SandboxTemplate.deployable``); the pumps play them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import threading
import time
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from .template import SandboxTemplate, TemplateError, friendly_name, referenced_ids

REGION = "us-east-1"
BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
_STACK_TIMEOUT_SECONDS = 60
# Loopback calls to moto: no retries (a failure is a bug worth seeing), short timeouts.
_CLIENT_CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30)


class SandboxError(RuntimeError):
    """The embedded system could not be assembled or run as the template says."""


class EnvironmentPatch:
    """Sets process environment variables and restores what was there before (tests share a process)."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, name: str, value: str | None) -> None:
        if name not in self._saved:
            self._saved[name] = os.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def update(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self.set(name, value)

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()


@dataclass(frozen=True)
class QueueInfo:
    logical_id: str
    url: str
    arn: str
    name: str
    visibility_timeout: int
    dead_letter_arn: str | None
    max_receive_count: int | None


@dataclass(frozen=True)
class TableInfo:
    logical_id: str
    name: str
    arn: str
    stream_arn: str | None


@dataclass(frozen=True)
class DeployedFunction:
    logical_id: str
    name: str  # physical function name
    arn: str
    environment: dict[str, str]  # as moto resolved the template's (refs → physical names)


@dataclass
class Resources:
    """What the stack created in moto, by logical id, and how to reach it."""

    endpoint: str
    region: str
    account_id: str
    stack_name: str
    physical_ids: dict[str, str] = field(default_factory=dict)
    tables: dict[str, TableInfo] = field(default_factory=dict)
    queues: dict[str, QueueInfo] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)  # logical id → topic ARN
    keys: dict[str, str] = field(default_factory=dict)  # logical id → key id
    functions: dict[str, DeployedFunction] = field(default_factory=dict)
    notification_topic_arn: str | None = None
    secrets: dict[str, str] = field(default_factory=dict)  # name → ARN

    def client(self, service: str) -> Any:
        """A boto3 client on the local endpoint (explicit, so it never depends on the environment)."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id="sandbox",
            aws_secret_access_key="sandbox",
            config=_CLIENT_CONFIG,
        )

    def queue_by_arn(self, arn: str) -> QueueInfo | None:
        return next((queue for queue in self.queues.values() if queue.arn == arn), None)

    @property
    def dead_letter_queues(self) -> list[QueueInfo]:
        """Queues another queue redrives to."""
        targets = {queue.dead_letter_arn for queue in self.queues.values() if queue.dead_letter_arn}
        return [queue for queue in self.queues.values() if queue.arn in targets]

    def as_json(self) -> dict[str, Any]:
        """``GET /__sandbox/resources`` (docs/api.md §2)."""
        return {
            "awsEndpoint": self.endpoint,
            "region": self.region,
            "tables": {friendly_name(t.logical_id): t.name for t in self.tables.values()},
            "queues": {friendly_name(q.logical_id): q.url for q in self.queues.values()},
            "notificationTopicArn": self.notification_topic_arn,
            "functions": {friendly_name(f.logical_id): f.name for f in self.functions.values()},
        }


class Resolver:
    """Resolves CloudFormation intrinsics (Ref, GetAtt, Join, Sub, Select, Split) against moto's stack."""

    def __init__(self, resources: Resources, template: SandboxTemplate) -> None:
        self._res = resources
        self._types = {lid: res.get("Type") for lid, res in template.resources.items()}
        self._attrs: dict[tuple[str, str], str] = {}

    def pseudo(self, name: str) -> str:
        values = {
            "AWS::Region": self._res.region,
            "AWS::AccountId": self._res.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self._res.stack_name,
            "AWS::NoValue": "",
        }
        if name not in values:
            raise TemplateError(f"unsupported pseudo parameter {name}")
        return values[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                lid, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.get_att(lid, attr)
            if key == "Fn::Join":
                return str(arg[0]).join(str(self.resolve(part)) for part in arg[1])
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if key == "Fn::Sub":
                return self._sub(arg)
        return {key: self.resolve(item) for key, item in value.items()}

    def ref(self, name: str) -> str:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name not in self._res.physical_ids:
            raise TemplateError(f"Ref to {name}, which moto did not create")
        return self._res.physical_ids[name]

    def get_att(self, lid: str, attr: str) -> str:
        if (lid, attr) not in self._attrs:
            self._attrs[(lid, attr)] = self._lookup_att(lid, attr)
        return self._attrs[(lid, attr)]

    def _lookup_att(self, lid: str, attr: str) -> str:
        kind, physical = self._types.get(lid), self.ref(lid)
        res = self._res
        if kind == "AWS::SQS::Queue":
            if attr == "QueueUrl":
                return physical
            attrs = res.client("sqs").get_queue_attributes(QueueUrl=physical, AttributeNames=["QueueArn"])
            arn = attrs["Attributes"]["QueueArn"]
            return {"Arn": arn, "QueueName": arn.rsplit(":", 1)[1]}[attr]
        if kind == "AWS::SNS::Topic":
            return {"TopicArn": physical, "TopicName": physical.rsplit(":", 1)[1]}[attr]
        if kind == "AWS::DynamoDB::Table":
            table = res.client("dynamodb").describe_table(TableName=physical)["Table"]
            return {"Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn", "")}[attr]
        if kind == "AWS::KMS::Key":
            key = res.client("kms").describe_key(KeyId=physical)["KeyMetadata"]
            return {"Arn": key["Arn"], "KeyId": key["KeyId"]}[attr]
        if kind == "AWS::Lambda::Function" and attr == "Arn":
            return f"arn:aws:lambda:{res.region}:{res.account_id}:function:{physical}"
        if kind == "AWS::IAM::Role" and attr == "Arn":
            return res.client("iam").get_role(RoleName=physical)["Role"]["Arn"]
        raise TemplateError(f"the sandbox cannot resolve Fn::GetAtt {lid}.{attr} ({kind})")

    def _sub(self, arg: Any) -> str:
        text, variables = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                lid, attr = name.split(".", 1)
                return self.get_att(lid, attr)
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, str(text))


def quiet_moto() -> None:
    """No request log line per call, no warning per resource type moto skips."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    warnings.filterwarnings(
        "ignore", message=r"Tried to parse .* not supported by moto", category=UserWarning
    )


class LocalAws:
    """A ``ThreadedMotoServer`` on 127.0.0.1 that every boto3 client of this process talks to.

    moto keeps its state per process, shared by every server (and ``mock_aws``) in it: the first
    LocalAws to start and the last to stop reset it, so one system's stack never meets the next one's.
    Systems running at the same time in one process need different stack names.
    """

    _active = 0
    _active_lock = threading.Lock()

    def __init__(self, port: int = 0, region: str = REGION) -> None:
        self.port = port
        self.region = region
        self._server: Any = None
        self._env = EnvironmentPatch()
        self.endpoint = ""

    def start(self) -> LocalAws:
        from moto.server import ThreadedMotoServer

        quiet_moto()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        with LocalAws._active_lock:
            if LocalAws._active == 0:
                self._reset_moto()
            LocalAws._active += 1
        # Every boto3 client of this process (the functions' too) goes to moto, never to AWS.
        self._env.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_REGION": self.region,
                "AWS_ACCESS_KEY_ID": "sandbox",
                "AWS_SECRET_ACCESS_KEY": "sandbox",
            }
        )
        self._env.set("AWS_SESSION_TOKEN", None)
        self._env.set("AWS_PROFILE", None)
        return self

    def stop(self) -> None:
        if self._server is not None:
            with LocalAws._active_lock:
                LocalAws._active -= 1
                if LocalAws._active == 0:
                    self._reset_moto()
            self._server.stop()
            # ThreadedMotoServer.stop() leaves the listening socket open; release the port.
            inner = getattr(self._server, "_server", None)
            if inner is not None:
                inner.server_close()
            self._server = None
        self._env.restore()

    def _reset_moto(self) -> None:
        """moto's own reset route: forget every resource of every service."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - our loopback moto server
            pass

    def deploy(
        self,
        template: SandboxTemplate,
        stack_name: str = "DrsReplenishment-dev",
        *,
        lwa_client_secret: str | None = None,
    ) -> Resources:
        """Create the stack from ``template`` (minus event source mappings) and describe what it made."""
        # moto warns about each resource type it skips (the API, schedules, policies), at creation and
        # again when listing the stack's resources: expected here, so not shown.
        moto_logger = logging.getLogger("moto")
        level = moto_logger.level
        moto_logger.setLevel(logging.ERROR)
        try:
            return self._deploy(template, stack_name, lwa_client_secret)
        finally:
            moto_logger.setLevel(level)

    def _deploy(self, template: SandboxTemplate, stack_name: str, lwa_client_secret: str | None) -> Resources:
        resources = Resources(
            endpoint=self.endpoint, region=self.region, account_id="", stack_name=stack_name
        )
        resources.account_id = resources.client("sts").get_caller_identity()["Account"]
        resources.client("ssm").put_parameter(
            Name=BOOTSTRAP_VERSION_PARAMETER, Value="30", Type="String", Overwrite=True
        )
        body = template.deployable()
        self._upload_asset_placeholders(resources, body)
        cfn = resources.client("cloudformation")
        cfn.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(body),
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        self._wait_for_stack(cfn, stack_name)
        paginator = cfn.get_paginator("list_stack_resources")
        for page in paginator.paginate(StackName=stack_name):
            for summary in page["StackResourceSummaries"]:
                if summary.get("PhysicalResourceId"):
                    resources.physical_ids[summary["LogicalResourceId"]] = summary["PhysicalResourceId"]
        resolver = Resolver(resources, template)
        _complete_what_moto_skips(resources, template, resolver)
        self._describe(resources, template, resolver)
        self._subscribe(resources, template, resolver)
        resources.notification_topic_arn = _notification_topic(resources, template)
        if lwa_client_secret is not None:
            self._create_lwa_secret(resources, lwa_client_secret)
        return resources

    @staticmethod
    def _wait_for_stack(cfn: Any, stack_name: str) -> None:
        deadline = time.monotonic() + _STACK_TIMEOUT_SECONDS
        while True:
            stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
            status = stack["StackStatus"]
            if status == "CREATE_COMPLETE":
                return
            if not status.endswith("IN_PROGRESS") or time.monotonic() > deadline:
                events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
                failed = [e for e in events if e.get("ResourceStatus", "").endswith("FAILED")]
                raise SandboxError(f"stack {stack_name} ended {status}: {failed[:3]}")
            time.sleep(0.02)  # moto creates synchronously; this loop rarely turns

    def _upload_asset_placeholders(self, resources: Resources, body: dict[str, Any]) -> None:
        """Put a tiny zip where each function's and layer's code asset would be (moto reads it)."""
        placeholder = io.BytesIO()
        with zipfile.ZipFile(placeholder, "w") as archive:
            archive.writestr("README", "placeholder: the sandbox runs functions/<name>/ in-process\n")
        pseudo = {"${AWS::AccountId}": resources.account_id, "${AWS::Region}": resources.region}
        s3 = resources.client("s3")
        buckets: set[str] = set()
        for res in body.get("Resources", {}).values():
            props = res.get("Properties", {})
            for location in (props.get("Code"), props.get("Content")):
                if not isinstance(location, dict) or "S3Key" not in location:
                    continue
                bucket = location.get("S3Bucket")
                if isinstance(bucket, dict) and "Fn::Sub" in bucket:
                    bucket = bucket["Fn::Sub"]
                    for token, value in pseudo.items():
                        bucket = bucket.replace(token, value)
                if not isinstance(bucket, str) or not isinstance(location["S3Key"], str):
                    raise TemplateError(f"cannot place a code asset at {location}")
                if bucket not in buckets:
                    with contextlib.suppress(
                        s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists
                    ):
                        s3.create_bucket(Bucket=bucket)
                    buckets.add(bucket)
                s3.put_object(Bucket=bucket, Key=location["S3Key"], Body=placeholder.getvalue())

    @staticmethod
    def _describe(resources: Resources, template: SandboxTemplate, resolver: Resolver) -> None:
        sqs, lam = resources.client("sqs"), resources.client("lambda")
        for lid in template.of_type("AWS::DynamoDB::Table"):
            if lid in resources.physical_ids:
                stream = resolver.get_att(lid, "StreamArn") or None
                resources.tables[lid] = TableInfo(
                    lid, resources.physical_ids[lid], resolver.get_att(lid, "Arn"), stream
                )
        for lid in template.of_type("AWS::SQS::Queue"):
            url = resources.physical_ids[lid]
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            redrive = json.loads(attrs["RedrivePolicy"]) if attrs.get("RedrivePolicy") else {}
            resources.queues[lid] = QueueInfo(
                logical_id=lid,
                url=url,
                arn=attrs["QueueArn"],
                name=attrs["QueueArn"].rsplit(":", 1)[1],
                visibility_timeout=int(attrs.get("VisibilityTimeout", 30)),
                dead_letter_arn=redrive.get("deadLetterTargetArn"),
                max_receive_count=int(redrive["maxReceiveCount"]) if redrive else None,
            )
        for lid in template.of_type("AWS::SNS::Topic"):
            resources.topics[lid] = resources.physical_ids[lid]
        for lid in template.of_type("AWS::KMS::Key"):
            resources.keys[lid] = resources.physical_ids[lid]
        for lid in template.functions:
            config = lam.get_function_configuration(FunctionName=resources.physical_ids[lid])
            resources.functions[lid] = DeployedFunction(
                logical_id=lid,
                name=config["FunctionName"],
                arn=config["FunctionArn"],
                environment=dict(config.get("Environment", {}).get("Variables", {})),
            )

    @staticmethod
    def _subscribe(resources: Resources, template: SandboxTemplate, resolver: Resolver) -> None:
        """moto creates no ``AWS::SNS::Subscription``: subscribe each one as the template says."""
        sns = resources.client("sns")
        for sub in template.subscriptions:
            attributes = {}
            for key, value in resolver.resolve(sub.attributes).items():
                if isinstance(value, bool):
                    value = "true" if value else "false"
                elif isinstance(value, dict | list):
                    value = json.dumps(value)
                attributes[key] = str(value)
            answer = sns.subscribe(
                TopicArn=resolver.resolve({"Ref": sub.topic}) if sub.topic else "",
                Protocol=sub.protocol,
                Endpoint=str(resolver.resolve(sub.endpoint)),
                Attributes=attributes,
                ReturnSubscriptionArn=True,
            )
            resources.physical_ids[sub.logical_id] = answer["SubscriptionArn"]

    @staticmethod
    def _create_lwa_secret(resources: Resources, secret: str) -> None:
        names = {
            fn.environment["LWA_CLIENT_SECRET_NAME"]
            for fn in resources.functions.values()
            if fn.environment.get("LWA_CLIENT_SECRET_NAME")
        }
        client = resources.client("secretsmanager")
        for name in sorted(names):
            try:
                answer = client.create_secret(Name=name, SecretString=secret)
            except client.exceptions.ResourceExistsException:
                # moto's state is per process: another system in this process made it already.
                answer = client.put_secret_value(SecretId=name, SecretString=secret)
            resources.secrets[name] = answer["ARN"]


def _complete_what_moto_skips(resources: Resources, template: SandboxTemplate, resolver: Resolver) -> None:
    """Apply the properties moto's CloudFormation accepts but does not apply (measured, moto 5.2.5).

    - ``AWS::KMS::Key`` ``KeyPolicy`` is stored as an object, and moto's DescribeKey then fails with
      500 parsing it as a string: set it again as JSON text.
    - ``AWS::DynamoDB::Table`` ``TimeToLiveSpecification`` and ``PointInTimeRecoverySpecification`` are
      ignored: apply them with the table APIs. (``SSESpecification`` too, but moto models table
      encryption neither way, so there is nothing to apply it to.)
    """
    kms, dynamodb = resources.client("kms"), resources.client("dynamodb")
    for lid, res in template.of_type("AWS::KMS::Key").items():
        policy = res.get("Properties", {}).get("KeyPolicy")
        if policy is not None and lid in resources.physical_ids:
            kms.put_key_policy(
                KeyId=resources.physical_ids[lid],
                PolicyName="default",
                Policy=json.dumps(resolver.resolve(policy)),
            )
    for lid, res in template.of_type("AWS::DynamoDB::Table").items():
        props, name = res.get("Properties", {}), resources.physical_ids.get(lid)
        if name is None:
            continue
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        pitr = props.get("PointInTimeRecoverySpecification", {})
        if pitr.get("PointInTimeRecoveryEnabled"):
            dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )


def _notification_topic(resources: Resources, template: SandboxTemplate) -> str | None:
    """The topic DRS publishes to: the one a queue subscribes to (or the only topic)."""
    subscribed = [
        sub.topic for sub in template.subscriptions if sub.protocol == "sqs" and sub.topic in resources.topics
    ]
    candidates = list(dict.fromkeys(subscribed)) or list(resources.topics)
    if len(candidates) > 1:
        named = [lid for lid in candidates if "notification" in lid.lower()]
        candidates = named or candidates
    return resources.topics[candidates[0]] if candidates else None


def referenced_queue(template: SandboxTemplate, value: Any) -> str | None:
    """The logical id of the queue ``value`` references, if any."""
    for ref in referenced_ids(value):
        if template.resources.get(ref, {}).get("Type") == "AWS::SQS::Queue":
            return ref
    return None
