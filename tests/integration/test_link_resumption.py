"""Linking within the invocation's time, and a linking that spent its code completing on retry.

Through the companion authorizer and function as API Gateway wires them (``tests/support/gateway.py``);
AWS is moto, DRS and LWA are the simulator on loopback, on the test's clock. The HTTP session retries
up to 4 attempts within 20 s per request here (the deployed defaults), so only the invocation's
remaining time can cut a request short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from drs_core import dependencies
from drs_core.clock import ManualClock
from tests.conftest import AwsEnv, LambdaContext
from tests.support import api_fixtures
from tests.support.api_fixtures import DEVICES, Api, Customer, new_serial

api = api_fixtures.api
simulator = api_fixtures.simulator

HTTP_MAX_ATTEMPTS = 4


def reserve_ms(api: Api) -> int:
    """The companion function's reserve for its writes (the handler module is imported by ``api``)."""
    return int(api.functions.companion_api.REQUEST_TIME_RESERVE_SECONDS * 1000)


@pytest.fixture(autouse=True)
def deployed_retry_budgets(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployed per-request budget (20 s, 4 attempts), longer than any invocation here."""
    monkeypatch.setenv("HTTP_MAX_ATTEMPTS", str(HTTP_MAX_ATTEMPTS))
    monkeypatch.setenv("HTTP_MAX_TOTAL_SECONDS", "20")
    dependencies.reset()


@dataclass
class ContextWithTime(LambdaContext):
    """A Lambda context whose invocation has ``remaining_ms`` left."""

    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def with_time_left(api: Api, milliseconds: int) -> None:
    api.gateway._context = ContextWithTime(remaining_ms=milliseconds)


def held_items(aws: AwsEnv) -> list[dict[str, Any]]:
    items = aws.dynamodb.scan(TableName=aws.tokens_table)["Items"]
    return [item for item in items if item["serial"]["S"].startswith("PENDING_LINK#")]


def a_link_that_spent_its_code(api: Api) -> tuple[Customer, str, str]:
    """A customer's consent whose code LWA exchanged before subscriptionInfo failed (503)."""
    customer = api.customer()
    serial = new_serial()
    code = api.consent(customer, serial)
    api.sim.set_fault("subscriptionInfo", 1.0, status=503)
    assert api.register(customer, serial, code).status == 503
    api.sim.set_fault("subscriptionInfo", 0)
    return customer, serial, code


def token_calls(api: Api) -> int:
    return len(api.sim.calls("token"))


def test_a_link_that_spent_its_code_completes_on_retry_without_a_second_exchange(
    api: Api, aws: AwsEnv
) -> None:
    # Given a consent, and DRS failing subscriptionInfo after LWA exchanged the code
    customer = api.customer()
    serial = new_serial()
    code = api.consent(customer, serial)
    api.sim.set_fault("subscriptionInfo", 1.0, status=503)
    first = api.register(customer, serial, code)
    assert (first.status, first.error_code) == (503, "UPSTREAM_UNAVAILABLE")
    assert token_calls(api) == 1
    # And the device is not linked, but the exchanged tokens are held, encrypted, for this link only
    assert api.request("GET", DEVICES, authorization=customer.bearer).body["devices"] == []
    (held,) = held_items(aws)
    assert held["ownerId"]["S"] == customer.customer_id
    assert code not in str(held) and "Atzr|" not in str(held) and "Atza|" not in str(held)

    # When DRS recovers and the app retries with the same (spent) code
    api.sim.set_fault("subscriptionInfo", 0)
    retry = api.register(customer, serial, code)

    # Then the link completes from the held tokens: no second code exchange
    assert retry.status == 201, retry.body
    assert retry.body["device"]["status"] == "LINKED"
    assert token_calls(api) == 1
    # And the held tokens became the device's own and are gone from the holding place
    assert held_items(aws) == []
    settings = api.request(
        "GET",
        api_fixtures.SETTINGS_LINK,
        api_fixtures.concrete(api_fixtures.SETTINGS_LINK, serial),
        authorization=customer.bearer,
        query={"exitUri": "myapp://done"},
    )
    assert settings.status == 200


def test_held_tokens_answer_only_the_same_customer_with_the_same_code(api: Api, aws: AwsEnv) -> None:
    # Given a link of a serial whose code was exchanged, then subscriptionInfo failed
    customer, serial, code = a_link_that_spent_its_code(api)

    # When another customer posts the same code for that serial, Then it is exchanged (and refused): the
    # held tokens are not theirs
    other = api.customer()
    intruder = api.register(other, serial, code)
    assert (intruder.status, intruder.error_code) == (400, "INVALID_AUTHORIZATION_CODE")
    assert token_calls(api) == 2
    # When the customer posts a new code of a new consent, Then that code is exchanged and the link is made
    fresh = api.register(customer, serial, api.consent(customer, serial))
    assert fresh.status == 201
    assert token_calls(api) == 3
    assert held_items(aws) == []


def test_held_tokens_whose_access_token_expired_are_refreshed_on_resume(
    api: Api, aws: AwsEnv, clock: ManualClock
) -> None:
    # Given a link that spent its code and failed
    customer, serial, code = a_link_that_spent_its_code(api)

    # When the app retries two hours later (the held access token has expired)
    clock.advance(2 * 3600)
    retry = api.register(customer, serial, code)

    # Then the held refresh token got a fresh access token (one refresh call) and the link completes
    assert retry.status == 201, retry.body
    assert token_calls(api) == 2


def test_held_tokens_expire_after_a_day(api: Api, aws: AwsEnv, clock: ManualClock) -> None:
    customer, serial, code = a_link_that_spent_its_code(api)
    # The tokens table's TTL removes the item eventually; until then it is ignored
    clock.advance(24 * 3600 + 1)
    late = api.register(customer, serial, code)
    assert (late.status, late.error_code) == (400, "INVALID_AUTHORIZATION_CODE")


def test_an_invocation_without_time_for_a_request_answers_503_and_keeps_the_code_unspent(api: Api) -> None:
    # Given a customer's consent, and an invocation with only the reserve left
    customer = api.customer()
    serial = new_serial()
    code = api.consent(customer, serial)
    with_time_left(api, reserve_ms(api))

    # When the app posts the code
    answer = api.register(customer, serial, code)

    # Then 503 without any call to LWA: the code is not spent
    assert (answer.status, answer.error_code) == (503, "UPSTREAM_UNAVAILABLE")
    assert token_calls(api) == 0
    # And a retry with time to spare links with it
    with_time_left(api, 20_000)
    assert api.register(customer, serial, code).status == 201


def test_retries_end_with_the_invocation_not_with_the_per_request_budget(api: Api, aws: AwsEnv) -> None:
    # Given subscriptionInfo failing, and an invocation with little time beyond the reserve
    customer = api.customer()
    serial = new_serial()
    code = api.consent(customer, serial)
    api.sim.set_fault("subscriptionInfo", 1.0, status=503)
    with_time_left(api, reserve_ms(api) + 300)

    # When the app posts the code
    answer = api.register(customer, serial, code)

    # Then the function gives up within the invocation (a 20 s budget per request would have made
    # every one of its attempts), answering 503 while it can still answer
    assert (answer.status, answer.error_code) == (503, "UPSTREAM_UNAVAILABLE")
    assert len(api.sim.calls("subscriptionInfo")) < HTTP_MAX_ATTEMPTS
