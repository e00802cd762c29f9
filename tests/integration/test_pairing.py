"""Proof of possession at linking (issue 16 §2): the device registry, the pairing code, the
failed-attempt lock, the model from the registry, and the stage setting that turns the check off.

Through the companion authorizer and function as API Gateway wires them, on moto and the simulator.
"""

from __future__ import annotations

from typing import Any

import pytest

from drs_core import dependencies
from drs_core.adapters.device_registry import LOCK_PERIOD, MAX_FAILED_ATTEMPTS, REGISTRY_SK
from drs_core.clock import ManualClock
from drs_core.domain.pairing import hash_pairing_code, normalized, pairing_code_matches
from tests.conftest import AwsEnv
from tests.support import api_fixtures
from tests.support.api_fixtures import DEVICE, Api, concrete, new_serial

api = api_fixtures.api
simulator = api_fixtures.simulator


def _device_items(aws: AwsEnv) -> list[dict[str, Any]]:
    """Every state item but the registry's, and every token item."""
    state = aws.dynamodb.scan(TableName=aws.state_table)["Items"]
    tokens = aws.dynamodb.scan(TableName=aws.tokens_table)["Items"]
    return [item for item in state if item["sk"]["S"] != REGISTRY_SK] + tokens


def _registry_item(aws: AwsEnv, serial: str) -> dict[str, Any]:
    key = {"pk": {"S": f"DEVICE#{serial}"}, "sk": {"S": REGISTRY_SK}}
    return aws.dynamodb.get_item(TableName=aws.state_table, Key=key)["Item"]


def test_a_consent_for_one_serial_does_not_link_another_without_its_pairing_code(
    api: Api, aws: AwsEnv
) -> None:
    # Given a customer who consented for their own device X, and a device Y someone else owns
    customer = api.customer()
    own, foreign = new_serial(), new_serial()
    api.provision(own)
    api.provision(foreign)
    code = api.consent(customer, own)

    # When the app registers Y with X's consent and no pairing code, or X's pairing code
    without_code = api.register(customer, foreign, code, pairing_code="")
    with_own_code = api.register(customer, foreign, code, pairing_code=api.pairing_code(own))

    # Then both are refused as unproven, and no device, slot or token was stored
    assert (without_code.status, without_code.error_code) == (403, "PAIRING_CODE_REJECTED")
    assert (with_own_code.status, with_own_code.error_code) == (403, "PAIRING_CODE_REJECTED")
    assert _device_items(aws) == []
    # And the consent was not spent: LWA never saw it
    assert [c for c in api.sim.calls() if c["operation"] == "token"] == []


def test_an_unknown_serial_is_refused_like_a_wrong_code_and_stores_nothing(api: Api, aws: AwsEnv) -> None:
    # Given a customer's consent for a serial the maker never manufactured
    customer = api.customer()
    serial = new_serial()
    code = api.consent(customer, serial)

    # When the app registers it with a code of the right shape
    answer = api.register(customer, serial, code, pairing_code="ABCDE-FGHJK")

    # Then 403, and nothing at all is stored (no registry item is created for it)
    assert (answer.status, answer.error_code) == (403, "PAIRING_CODE_REJECTED")
    assert aws.dynamodb.scan(TableName=aws.state_table)["Items"] == []


def test_a_stranger_cannot_claim_a_serial_that_is_not_linked_yet(api: Api) -> None:
    # Given a manufactured device nobody linked yet, and a stranger who guesses its serial
    serial = new_serial()
    api.provision(serial)
    stranger = api.customer()

    # When the stranger links it without the device's code
    answer = api.register(stranger, serial, api.consent(stranger, serial), pairing_code="00000-00000")

    # Then it is refused, and the real owner links it afterwards
    assert answer.status == 403
    owner = api.customer()
    assert api.register(owner, serial, api.consent(owner, serial)).status == 201


def test_repeated_wrong_codes_lock_the_serial_for_a_while(api: Api, aws: AwsEnv, clock: ManualClock) -> None:
    # Given a manufactured device and a customer guessing its code
    serial = new_serial()
    api.provision(serial)
    customer = api.customer()

    # When the customer sends the limit of wrong codes, then the right one
    wrong = [
        api.register(customer, serial, api.consent(customer, serial), pairing_code=f"WRONG-0000{n}")
        for n in range(MAX_FAILED_ATTEMPTS)
    ]
    locked = api.register(customer, serial, api.consent(customer, serial))

    # Then the wrong ones are 403 and the serial is locked: even the right code waits (429)
    assert [a.status for a in wrong] == [403] * MAX_FAILED_ATTEMPTS
    assert (locked.status, locked.error_code) == (429, "PAIRING_LOCKED")
    assert "pairingLockedUntil" in _registry_item(aws, serial)
    # And once the lock has passed, the right code links it and the count starts over
    clock.advance(LOCK_PERIOD.total_seconds() + 1)
    assert api.register(customer, serial, api.consent(customer, serial)).status == 201
    item = _registry_item(aws, serial)
    assert "failedPairingAttempts" not in item and "pairingLockedUntil" not in item


def test_the_model_comes_from_the_registry(api: Api) -> None:
    # Given a device manufactured as a WaterFilterPro
    customer = api.customer()
    serial = new_serial()
    api.provision(serial, "WaterFilterPro")

    # When the app registers it naming another model, then naming none
    body = {
        "pairingCode": api.pairing_code(serial),
        "authorizationCode": api.consent(customer, serial),
        "redirectUri": api_fixtures.REDIRECT_URI,
    }
    path = concrete(api_fixtures.REGISTRATION, serial)
    other = api.request(
        "POST",
        api_fixtures.REGISTRATION,
        path,
        authorization=customer.bearer,
        body={**body, "modelId": "Printer"},
    )
    body["authorizationCode"] = api.consent(customer, serial)
    linked = api.request("POST", api_fixtures.REGISTRATION, path, authorization=customer.bearer, body=body)

    # Then another model is refused, and without one the registry's is the device's
    assert (other.status, other.error_code) == (400, "MODEL_MISMATCH")
    assert linked.status == 201 and linked.body["device"]["modelId"] == "WaterFilterPro"
    read = api.request("GET", DEVICE, concrete(DEVICE, serial), authorization=customer.bearer)
    assert read.body["modelId"] == "WaterFilterPro"


def test_a_stage_may_turn_the_check_off(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a stage deployed with requirePairingCode=false
    monkeypatch.setenv("REQUIRE_PAIRING_CODE", "false")
    dependencies.reset()
    customer = api.customer()
    serial = new_serial()  # never provisioned

    # When the app links a device without a pairing code
    answer = api.register(customer, serial, api.consent(customer, serial), pairing_code="")

    # Then it links with the model the app named
    assert answer.status == 201 and answer.body["device"]["modelId"] == api_fixtures.MODEL_ID


def test_pairing_codes_are_stored_as_salted_scrypt_hashes() -> None:
    # Given one code hashed twice
    code = "K7Q2M-9XD4T"
    first, second = hash_pairing_code(code), hash_pairing_code(code)

    # Then the hashes differ (per-device salt), carry their parameters, and verify the code as typed
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert pairing_code_matches("k7q2m 9xd4t", first) and pairing_code_matches(code, second)
    assert not pairing_code_matches("K7Q2M-9XD4X", first)
    assert normalized("O0-Il") == "0011"


def test_the_manufacturing_import_registers_devices_and_hands_out_generated_codes(
    api: Api, aws: AwsEnv, tmp_path: Any
) -> None:
    # Given a production batch: one device with a code from the line, two needing codes
    from manufacturing.import_devices import main

    given, generated = new_serial(), [new_serial(), new_serial()]
    (tmp_path / "line.csv").write_text(f"serial,modelId,pairingCode\n{given},WaterFilterPro,K7Q2M-9XD4T\n")
    (tmp_path / "batch.csv").write_text(
        "serial,modelId\n" + "".join(f"{serial},WaterFilterPro\n" for serial in generated)
    )

    # When the maker imports both, then the first again
    codes_out = tmp_path / "codes.csv"
    args = ["--table", aws.state_table]
    first = main([str(tmp_path / "line.csv"), *args], dynamodb=aws.dynamodb)
    second = main([str(tmp_path / "batch.csv"), *args, "--codes-out", str(codes_out)], dynamodb=aws.dynamodb)
    again = main([str(tmp_path / "line.csv"), *args], dynamodb=aws.dynamodb)

    # Then every device is registered with only a hash, the generated codes are in the output file,
    # and a serial registered already is reported, not overwritten
    assert (first, second, again) == (0, 0, 1)
    lines = codes_out.read_text().splitlines()
    assert lines[0] == "serial,modelId,pairingCode" and len(lines) == 3
    stored = str(aws.dynamodb.scan(TableName=aws.state_table)["Items"])
    assert "K7Q2M-9XD4T" not in stored and all(line.split(",")[2] not in stored for line in lines[1:])
    # And a customer links a generated device with its printed code
    customer = api.customer()
    serial, _, code = lines[1].split(",")
    linked = api.register(customer, serial, api.consent(customer, serial), pairing_code=code)
    assert linked.status == 201
