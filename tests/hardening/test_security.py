"""Security checks on the whole product: who may call what over real HTTP, what the logs never hold,
and who may publish into the notification path.

1. The authorization matrix through the local gateway and the real authorizers: every route of the
   template x {no token, a bad token, another user's token, another device's (or the wrong kind of)
   credential, the right token}; whatever API Gateway itself refuses never reaches the route's function.
2. A log scan: a full flow (linking, PKCE, usage, reorders, daily reports with token refreshes, DRS and
   LWA faults, notifications, settings link, test orders, a refused code, unlinking, a deregistration
   from Amazon's side) with the functions logging at DEBUG; every line they wrote, every EMF document,
   every log record of the process at INFO and above, is searched for every access token, refresh
   token, authorization code, PKCE verifier, device credential and the LWA client secret.
3. The SNS topic and SQS queue policies of the template refuse other publishers: a small evaluator of
   their statements answers "may X publish / send?" for DRS, us, and strangers.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from drs_core.observability import logger as function_logger
from sandbox.scenario import LinkedDevice, SandboxClient, remaining
from sandbox.simulator.state import DEFAULT_CLIENT_SECRET
from sandbox.system import EmbeddedSystem
from sandbox.template import friendly_name, synthesized_template
from tests.hardening.conftest import FUNCTION_ANSWER_HEADER, MODEL_ID, SLOTS, table_snapshot

ACCOUNT = "123456789012"
DRS_ACCOUNT = "476877469412"
STRANGER = "111122223333"

# ------------------------------------------------------------------------------ 1. the matrix

KINDS = ("none", "bad", "other_user", "other_credential", "right")
COMPANION_DEFAULT = {"none": 401, "bad": 403, "other_user": 404, "other_credential": 403, "right": 200}
DEVICE_DEFAULT = {"none": 401, "bad": 403, "other_user": 403, "other_credential": 403, "right": 202}
PUBLIC_DEFAULT = dict.fromkeys(KINDS, 200)
# Route key → what each caller gets. Another user passes the companion authorizer but never sees the
# device (404, so serials don't leak); registering a serial someone holds is 409; their own list just
# lacks it. On the device route "other_user" is the owner's app token, "other_credential" another
# device's credential; on companion routes "other_credential" is a device credential.
EXPECTED: dict[str, dict[str, int]] = {
    "POST /v1/devices/{serial}/registration": {**COMPANION_DEFAULT, "other_user": 409, "right": 201},
    "DELETE /v1/devices/{serial}/registration": {**COMPANION_DEFAULT, "right": 204},
    "GET /v1/devices": {**COMPANION_DEFAULT, "other_user": 200},
    "GET /v1/devices/{serial}": COMPANION_DEFAULT,
    "GET /v1/devices/{serial}/settings-link": COMPANION_DEFAULT,
    "PUT /v1/devices/{serial}/slots/{slotId}/policy": COMPANION_DEFAULT,
    "DELETE /v1/devices/{serial}/test-orders": COMPANION_DEFAULT,
    "DELETE /v1/devices/{serial}/test-orders/{slotId}": COMPANION_DEFAULT,
    "POST /v1/devices/{serial}/usage": DEVICE_DEFAULT,
    "GET /v1/openapi.json": PUBLIC_DEFAULT,
}


def _authorization(kind: str, route_key: str, device: LinkedDevice, other: LinkedDevice) -> str | None:
    device_route = route_key.endswith("/usage")
    return {
        "none": None,
        "bad": f"Device {secrets.token_urlsafe(32)}"
        if device_route
        else f"Bearer Atza|{secrets.token_urlsafe(48)}",
        "other_user": f"Bearer {(device if device_route else other).customer.app_token}",
        "other_credential": f"Device {other.device_token}",
        "right": f"Device {device.device_token}" if device_route else f"Bearer {device.customer.app_token}",
    }[kind]


def _request_options(
    kind: str,
    route_key: str,
    device: LinkedDevice,
    other: LinkedDevice,
    system: EmbeddedSystem,
    client: SandboxClient,
) -> dict[str, Any]:
    template = route_key.partition(" ")[2]
    if route_key == "POST /v1/devices/{serial}/registration":
        # Each attempt carries a fresh consent of the customer it claims to be.
        customer = other.customer if kind == "other_user" else device.customer
        code, redirect = system.control.authorize(  # type: ignore[union-attr]
            customer.customer_id,
            model_id=MODEL_ID,
            serial=device.serial,
            slots=_slots_json(),
            is_test_device=True,
        )
        return {
            "json": {
                "modelId": MODEL_ID,
                "pairingCode": client.pairing_code(device.serial, MODEL_ID),
                "authorizationCode": code,
                "redirectUri": redirect,
                "isTestDevice": True,
            }
        }
    if template.endswith("/policy"):
        return {"json": {"autoReorder": False}}
    if template.endswith("/settings-link"):
        return {"params": {"exitUri": "myapp://done"}}
    if template.endswith("/usage"):
        now = system.clock.now()
        return {"json": {"readings": [remaining("Filter", 60.0, now)]}}
    return {}


def _slots_json() -> dict[str, dict[str, Any]]:
    return {slot_id: product.to_json() for slot_id, product in SLOTS.items()}


def test_every_route_answers_each_caller_as_the_matrix_says(
    system: EmbeddedSystem, client: SandboxClient
) -> None:
    # Given every route the template serves, known to this matrix
    routes = sorted(route.route_key for route in system.template.routes)  # type: ignore[union-attr]
    assert routes == sorted(EXPECTED), "a route was added or removed: extend EXPECTED"
    got: dict[str, dict[str, int]] = {}
    reached: list[str] = []
    for number, route_key in enumerate(routes):
        # A linked test device of one customer, and another customer with a device of their own
        owner = client.create_customer(f"owner {number}")
        device = client.link_device(owner, MODEL_ID, f"MATRIX{number:03d}A", SLOTS, is_test=True)
        stranger = client.create_customer(f"stranger {number}")
        other = client.link_device(stranger, MODEL_ID, f"MATRIX{number:03d}B", SLOTS, is_test=True)
        method, _, template = route_key.partition(" ")
        path = template.replace("{serial}", device.serial).replace("{slotId}", "Filter")
        got[route_key] = {}
        # When each kind of caller calls it (the right one last: it may unlink the device)
        for kind in KINDS:
            function = system.runner.template.functions[  # type: ignore[union-attr]
                next(r.function for r in system.template.routes if r.route_key == route_key)  # type: ignore[union-attr]
            ].name
            before = system.invocations.get(function, 0)
            authorization = _authorization(kind, route_key, device, other)
            response = requests.request(
                method,
                system.gateway_url + path,
                headers={"Authorization": authorization} if authorization else {},
                timeout=30,
                **_request_options(kind, route_key, device, other, system, client),
            )
            got[route_key][kind] = response.status_code
            by_gateway = FUNCTION_ANSWER_HEADER not in response.headers
            if by_gateway and system.invocations.get(function, 0) != before:
                reached.append(f"{route_key} as {kind}: refused by the gateway, yet {function} ran")
            refused = kind in ("none", "bad", "other_credential") and EXPECTED[route_key][kind] in (401, 403)
            if refused and not by_gateway:
                reached.append(f"{route_key} as {kind}: reached {function}")

    # Then each caller got what the matrix says, and nothing refused at the gateway reached a function
    assert got == EXPECTED
    assert not reached


def test_another_users_registration_attempt_leaves_the_owner_linked(
    system: EmbeddedSystem, client: SandboxClient
) -> None:
    # Given a device linked by its owner
    owner = client.create_customer("rightful owner")
    device = client.link_device(owner, MODEL_ID, "HIJACK0001", SLOTS)
    intruder = client.create_customer("intruder")

    # When another customer consents for the same serial and tries to register it
    code, redirect = system.control.authorize(  # type: ignore[union-attr]
        intruder.customer_id, model_id=MODEL_ID, serial=device.serial, slots=_slots_json()
    )
    status, _ = client.request(
        "POST",
        f"/v1/devices/{device.serial}/registration",
        authorization=f"Bearer {intruder.app_token}",
        expect=(409,),
        # Even holding the device's pairing code (a second-hand buyer, say): the owner must unlink first.
        body={
            "modelId": MODEL_ID,
            "pairingCode": client.pairing_code(device.serial, MODEL_ID),
            "authorizationCode": code,
            "redirectUri": redirect,
        },
    )

    # Then it is refused before the code is exchanged: the owner's device is still linked and reports
    assert status == 409
    assert client.get_device(device)["status"] == "LINKED"
    client.post_usage(device, [remaining("Filter", 70.0, system.clock.now())])


# ------------------------------------------------------------------------------ 1b. revocation

# How a device's link ends; after each, the credential of the ended link must be refused at once.
LINK_ENDINGS = ("unlinked", "relinked_by_the_same_customer", "relinked_by_another_customer", "deregistered")


def _end_link(
    ending: str, device: LinkedDevice, client: SandboxClient, system: EmbeddedSystem
) -> LinkedDevice | None:
    """End ``device``'s link the way ``ending`` says; the device as newly linked, if it was."""
    serial = device.serial
    if ending == "unlinked":
        client.unlink(device)
        return None
    if ending == "relinked_by_the_same_customer":
        return client.link_device(device.customer, MODEL_ID, serial, SLOTS, is_test=True)
    if ending == "relinked_by_another_customer":
        client.unlink(device)
        newcomer = client.create_customer(f"next owner of {serial}")
        return client.link_device(newcomer, MODEL_ID, serial, SLOTS, is_test=True)
    system.advance(60)  # a minute after linking: well inside the authorizer cache's 300 s
    system.control.deregister_device(serial)  # type: ignore[union-attr]
    system.drain()  # DeviceDeregisteredNotification through SNS, SQS and the notifications function
    return None


@pytest.mark.parametrize("ending", LINK_ENDINGS)
def test_a_credential_of_an_ended_link_is_refused_at_once_despite_the_authorizer_cache(
    system: EmbeddedSystem, client: SandboxClient, ending: str
) -> None:
    # Given a linked device that reported, so the gateway caches its authorizer's "allow"
    owner = client.create_customer(f"revocation {ending}")
    device = client.link_device(
        owner, MODEL_ID, f"REVOKE{LINK_ENDINGS.index(ending):03d}", SLOTS, is_test=True
    )
    client.post_usage(device, [remaining("Filter", 80.0, system.clock.now())])

    # When its link ends, and the device reports again with its old credential at once
    successor = _end_link(ending, device, client, system)
    stored = table_snapshot(system)
    authorizer_runs = sum(system.gateway.authorizer_invocations.values())  # type: ignore[union-attr]
    status, answer = client.post_usage(
        device, [remaining("Filter", 5.0, system.clock.now())], expect=(202, 403)
    )

    # Then the gateway let it through on its cached answer (no authorizer run), and the usage write
    # refused it: 403, nothing stored
    assert sum(system.gateway.authorizer_invocations.values()) == authorizer_runs  # type: ignore[union-attr]
    assert (status, (answer or {}).get("error", {}).get("code")) == (403, "CREDENTIAL_REVOKED")
    assert table_snapshot(system) == stored
    # And the new link's credential works
    if successor is not None:
        client.post_usage(successor, [remaining("Filter", 70.0, system.clock.now())])


# ------------------------------------------------------------------------------ 1c. proof of possession

# What the app sends as the pairing code in each case (None: no field); every one is refused with 403.
POSSESSION_CASES = ("no_code", "another_devices_code", "wrong_code", "unknown_serial")


def _without_counters(snapshot: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The snapshot without the registry's failed-attempt count: what a refused pairing may write."""
    return {
        table: sorted(
            (
                {k: v for k, v in item.items() if k not in ("failedPairingAttempts", "pairingLockedUntil")}
                for item in items
            ),
            key=repr,
        )
        for table, items in snapshot.items()
    }


@pytest.mark.parametrize("case", POSSESSION_CASES)
def test_linking_without_proof_of_possession_is_refused_and_stores_nothing(
    system: EmbeddedSystem, client: SandboxClient, case: str
) -> None:
    # Given a manufactured device, another one, and a customer who consented for the first
    number = POSSESSION_CASES.index(case)
    serial = f"UNKNOWN{number:03d}" if case == "unknown_serial" else f"PAIRING{number:03d}A"
    if case != "unknown_serial":
        client.provision_device(serial, MODEL_ID)
    other_code = client.provision_device(f"PAIRING{number:03d}B", MODEL_ID)
    customer = client.create_customer(f"possession {case}")
    code, redirect = system.control.authorize(  # type: ignore[union-attr]
        customer.customer_id, model_id=MODEL_ID, serial=serial, slots=_slots_json()
    )
    pairing = {"no_code": None, "another_devices_code": other_code}.get(case, "ZZZZZ-ZZZZZ")
    body = {"authorizationCode": code, "redirectUri": redirect, "modelId": MODEL_ID}
    if pairing is not None:
        body["pairingCode"] = pairing
    before = table_snapshot(system)

    # When the app links it
    status, answer = client.request(
        "POST",
        f"/v1/devices/{serial}/registration",
        authorization=f"Bearer {customer.app_token}",
        expect=(201, 403),
        body=body,
    )

    # Then 403, nothing stored (a wrong code is counted against the serial, nothing else), the
    # consent unspent
    assert (status, answer["error"]["code"] if status == 403 else answer) == (403, "PAIRING_CODE_REJECTED")
    assert _without_counters(table_snapshot(system)) == _without_counters(before)
    assert not [c for c in system.control.calls() if c["operation"] == "token" and c.get("serial") == serial]  # type: ignore[union-attr]


def test_the_sandbox_provisions_devices_with_a_code_shown_once(system: EmbeddedSystem) -> None:
    # When a device is provisioned, then again, and with a bad body
    url = f"{system.gateway_url}/__sandbox/devices"
    first = requests.post(url, json={"serial": "FACTORY001", "modelId": MODEL_ID}, timeout=30)
    again = requests.post(url, json={"serial": "FACTORY001", "modelId": MODEL_ID}, timeout=30)
    bad = requests.post(url, json={"serial": "FACTORY 002"}, timeout=30)

    # Then 201 with the code, 409 for a serial registered already, 400 for a bad body
    assert first.status_code == 201
    body = first.json()
    assert set(body) == {"serial", "modelId", "pairingCode"} and body["serial"] == "FACTORY001"
    assert (again.status_code, again.json()["error"]["code"]) == (409, "DEVICE_ALREADY_PROVISIONED")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "INVALID_REQUEST")
    # And the code is stored only as its hash
    assert body["pairingCode"] not in repr(table_snapshot(system))


# ------------------------------------------------------------------------------ 2. the log scan


class _Capture(logging.Handler):
    """Every log record of the process (SDK wire logs at DEBUG aside), formatted with its traceback."""

    QUIET = ("botocore", "boto3", "urllib3", "s3transfer")

    def __init__(self, sink: io.StringIO) -> None:
        super().__init__(level=logging.DEBUG)
        self.sink = sink
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.INFO and record.name.startswith(self.QUIET):
            return
        self.sink.write(self.format(record) + "\n")


@contextlib.contextmanager
def _everything_logged(system: EmbeddedSystem) -> Iterator[io.StringIO]:
    """The functions' logger at DEBUG, its lines and stdout (EMF) and the process's log records captured."""
    sink = io.StringIO()
    handler = function_logger.registered_handler
    previous_stream = handler.setStream(sink)  # type: ignore[attr-defined]
    previous_level = function_logger.log_level
    root = logging.getLogger()
    capture = _Capture(sink)
    root_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    function_logger.setLevel("DEBUG")
    try:
        with contextlib.redirect_stdout(sink):
            yield sink
    finally:
        function_logger.setLevel(previous_level)
        root.setLevel(root_level)
        root.removeHandler(capture)
        handler.setStream(previous_stream)  # type: ignore[attr-defined]


def _full_flow(system: EmbeddedSystem, client: SandboxClient) -> dict[str, str]:
    """Everything the product does, with faults; returns the credentials it handed out by name."""
    control = system.control
    assert control is not None
    secrets_seen: dict[str, str] = {}
    ana = client.create_customer("log ana")
    ben = client.create_customer("log ben")
    secrets_seen.update({"ana app token": ana.app_token, "ben app token": ben.app_token})
    filter_ = client.link_device(ana, MODEL_ID, "LOGSCAN01", SLOTS)
    mobile = client.link_device(ana, MODEL_ID, "LOGSCAN02", SLOTS, pkce=True, is_test=True)
    leaving = client.link_device(ben, MODEL_ID, "LOGSCAN03", SLOTS)
    for device in (filter_, mobile, leaving):
        secrets_seen[f"{device.serial} credential"] = device.device_token
        secrets_seen[f"{device.serial} pairing code"] = client.pairing_codes[device.serial]
    # A code LWA refuses, a wrong pairing code, and a device credential that is wrong.
    secrets_seen["LOGSCAN09 pairing code"] = client.provision_device("LOGSCAN09", MODEL_ID)
    client.request(
        "POST",
        "/v1/devices/LOGSCAN09/registration",
        authorization=f"Bearer {ana.app_token}",
        expect=400,
        body={
            "modelId": MODEL_ID,
            "pairingCode": client.pairing_codes["LOGSCAN09"],
            "authorizationCode": "ANnotarealcode",
            "redirectUri": "https://localhost/callback",
        },
    )
    wrong_pairing_code = "ZZZZZ-ZZZZZ"
    secrets_seen["wrong pairing code"] = wrong_pairing_code
    client.request(
        "POST",
        "/v1/devices/LOGSCAN09/registration",
        authorization=f"Bearer {ana.app_token}",
        expect=403,
        body={
            "pairingCode": wrong_pairing_code,
            "authorizationCode": "ANnotarealcode",
            "redirectUri": "https://localhost/callback",
        },
    )
    client.request(
        "POST",
        "/v1/devices/LOGSCAN01/usage",
        authorization=f"Device {secrets.token_urlsafe(32)}",
        expect=403,
        body={"readings": [remaining("Filter", 1.0, system.clock.now())]},
    )
    # Settings link (its URL carries a fresh access token), a policy change.
    _, link = client.request(
        "GET",
        f"/v1/devices/{filter_.serial}/settings-link?exitUri=myapp://done",
        authorization=f"Bearer {ana.app_token}",
    )
    secrets_seen["settings-link URL"] = link["url"]
    client.update_policy(filter_, "Filter", thresholdFraction=0.3)
    # Two days of use with faults on reports and token refreshes; the slots cross their reorder point.
    control.set_fault("deviceStatus", 0.3, status=500, seed=1)
    control.set_fault("token", 0.3, status=503, seed=2)
    control.set_fault("replenish", 0.3, status=500, seed=3)
    level = {"Filter": 90.0, "Cleaner": 450.0}
    for _hour in range(0, 48, 6):
        system.advance(6 * 3600)
        now = system.clock.now()
        level = {"Filter": level["Filter"] - 9, "Cleaner": level["Cleaner"] - 40}
        for device in (filter_, mobile, leaving):
            client.post_usage(device, [remaining(slot, value, now) for slot, value in level.items()])
        system.drain()
    for endpoint in ("deviceStatus", "token", "replenish"):
        control.set_fault(endpoint, 0.0)
    # Amazon ships, the maker cancels its test orders, a customer leaves from Amazon's side, one unlinks.
    for order in control.device(filter_.serial)["orders"]:
        control.order_action(order["instanceId"], "ship")
    client.cancel_test_orders(mobile)
    control.deregister_device(leaving.serial)
    system.advance(3600)
    client.unlink(mobile)
    system.advance(timedelta(days=1).total_seconds())
    return secrets_seen


# The flow's simulated days lie far from the wall clock: Powertools warns that CloudWatch would skip
# metrics timestamped then, which is beside the point here.
@pytest.mark.filterwarnings("ignore:This metric doesn't meet the requirements")
def test_no_token_secret_or_credential_is_ever_logged(system: EmbeddedSystem, client: SandboxClient) -> None:
    # Given a full flow of the product, with every function logging at DEBUG, everything captured
    with _everything_logged(system) as sink:
        handed_out = _full_flow(system, client)
    logged = sink.getvalue()

    # And every credential that existed: the simulator's tokens and codes, the client secret, the device
    # credentials and links handed out
    simulator = system.simulator.simulator  # type: ignore[union-attr]
    known = {f"LWA access token {t[:9]}…": t for t in simulator._access}
    known.update({f"LWA refresh token {t[:9]}…": t for t in simulator._refresh})
    known.update({f"authorization code {c[:4]}…": c for c in simulator._codes})
    known["LWA client secret"] = DEFAULT_CLIENT_SECRET
    known.update(handed_out)
    token_in_link = re.search(
        r"Atza\|[A-Za-z0-9_\-%.]+", requests.utils.unquote(handed_out["settings-link URL"])
    )
    assert token_in_link, "the settings link carries an access token"

    # Then the capture is substantial (DEBUG lines of the functions, EMF documents, error records) …
    assert logged.count("\n") > 200 and '"level":"DEBUG"' in logged.replace(" ", "") and '"_aws"' in logged
    assert len(known) > 15
    # … and holds none of them, nor anything shaped like an LWA token
    leaked = sorted(name for name, value in known.items() if value and value in logged)
    assert not leaked, leaked
    assert not re.search(r"Atz[ar]\|[A-Za-z0-9_-]{8}", logged)


# ------------------------------------------------------------------------------ 3. publish policies


def _resolve(value: Any, template: dict[str, Any]) -> Any:
    """Intrinsics → strings, for the few shapes these policies use (account us-east-1/123456789012)."""
    if isinstance(value, dict):
        if "Ref" in value:
            ref = value["Ref"]
            pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "AWS::Region": "us-east-1"}
            if ref in pseudo:
                return pseudo[ref]
            resource = template["Resources"][ref]
            if resource["Type"] == "AWS::SNS::Topic":
                name = resource["Properties"].get("TopicName") or ref
                return f"arn:aws:sns:us-east-1:{ACCOUNT}:{_resolve(name, template)}"
            return ref
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(_resolve(part, template)) for part in parts)
        if "Fn::GetAtt" in value:
            return f"arn:aws:sqs:us-east-1:{ACCOUNT}:{value['Fn::GetAtt'][0]}"
        if "Fn::Sub" in value:
            text = value["Fn::Sub"]
            return text.replace("${AWS::StackName}", "DrsReplenishment-dev")
        return {key: _resolve(item, template) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, template) for item in value]
    return value


def _principal_matches(principal: Any, caller: dict[str, str]) -> bool:
    if principal == "*" or principal == {"AWS": "*"}:
        return True
    accounts = principal.get("AWS", []) if isinstance(principal, dict) else []
    services = principal.get("Service", []) if isinstance(principal, dict) else []
    accounts = [accounts] if isinstance(accounts, str) else accounts
    services = [services] if isinstance(services, str) else services
    if "service" in caller:
        return caller["service"] in services
    return any(a in (caller["account"], f"arn:aws:iam::{caller['account']}:root") for a in accounts)


def _conditions_hold(conditions: dict[str, Any], caller: dict[str, str]) -> bool:
    for operator, tests in conditions.items():
        for key, expected in tests.items():
            actual = {"aws:SourceArn": caller.get("source_arn"), "aws:SecureTransport": "true"}.get(key)
            expected_values = expected if isinstance(expected, list) else [expected]
            if operator in ("ArnEquals", "StringEquals", "Bool") and str(actual) not in map(
                str, expected_values
            ):
                return False
    return True


def may(document: dict[str, Any], action: str, caller: dict[str, str]) -> bool:
    """IAM's answer for a resource policy alone: an Allow matches and no Deny does."""
    allowed = False
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if not any(re.fullmatch(a.lower().replace("*", ".*"), action.lower()) for a in actions):
            continue
        if not _principal_matches(statement.get("Principal"), caller):
            continue
        if not _conditions_hold(statement.get("Condition", {}), caller):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return synthesized_template()


def _policies(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Policy documents by the friendly name of the topic or queue they guard."""
    found = {}
    for resource in template["Resources"].values():
        if resource["Type"] != kind:
            continue
        targets = resource["Properties"].get("Topics") or resource["Properties"].get("Queues")
        for target in targets:
            found[friendly_name(target["Ref"])] = _resolve(resource["Properties"]["PolicyDocument"], template)
    return found


def test_only_drs_and_our_account_may_publish_to_the_notification_topic(template: dict[str, Any]) -> None:
    # Given the notification topic's policy
    policy = _policies(template, "AWS::SNS::TopicPolicy")["NotificationsTopic"]

    # When DRS, our account and strangers ask to publish
    answers = {
        who: may(policy, "sns:Publish", caller)
        for who, caller in {
            "DRS": {"account": DRS_ACCOUNT},
            "us": {"account": ACCOUNT},
            "another account": {"account": STRANGER},
            "a service": {"service": "events.amazonaws.com"},
        }.items()
    }

    # Then only DRS and we may; and no topic of the stack lets anyone else publish
    assert answers == {"DRS": True, "us": True, "another account": False, "a service": False}
    for name, document in _policies(template, "AWS::SNS::TopicPolicy").items():
        assert not may(document, "sns:Publish", {"account": STRANGER}), name


def test_only_our_topic_may_send_to_the_notification_queue(template: dict[str, Any]) -> None:
    # Given the notification queue's policy and our topic's ARN
    policies = _policies(template, "AWS::SQS::QueuePolicy")
    topic_arn = next(
        _resolve({"Ref": lid}, template)
        for lid, resource in template["Resources"].items()
        if resource["Type"] == "AWS::SNS::Topic" and friendly_name(lid) == "NotificationsTopic"
    )
    stranger_topic = f"arn:aws:sns:us-east-1:{STRANGER}:drs-notifications"

    # When SNS on behalf of our topic, of another topic, and accounts ask to send
    answers = {
        who: may(policies["NotificationsQueue"], "sqs:SendMessage", caller)
        for who, caller in {
            "SNS for our topic": {"service": "sns.amazonaws.com", "source_arn": topic_arn},
            "SNS for another topic": {"service": "sns.amazonaws.com", "source_arn": stranger_topic},
            "DRS's account": {"account": DRS_ACCOUNT},
            "another account": {"account": STRANGER},
        }.items()
    }

    # Then only our topic may; no queue of the stack lets an outsider send
    assert answers == {
        "SNS for our topic": True,
        "SNS for another topic": False,
        "DRS's account": False,
        "another account": False,
    }
    for name, document in policies.items():
        assert not may(document, "sqs:SendMessage", {"account": STRANGER}), name
        assert not may(
            document, "sqs:SendMessage", {"service": "sns.amazonaws.com", "source_arn": stranger_topic}
        ), name
