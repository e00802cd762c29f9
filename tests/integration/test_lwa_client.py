"""LwaClient against the simulator's LWA routes over loopback HTTP, plus the no-secrets-in-logs check."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest
import requests

from drs_core.adapters.drs_client import DrsClient, SlotStatusReport
from drs_core.adapters.http import Timeouts
from drs_core.adapters.lwa_client import LwaClient, TokenGrant
from drs_core.clock import parse_iso
from drs_core.errors import (
    DrsTokenRejected,
    LwaError,
    LwaInvalidClient,
    LwaInvalidGrant,
    LwaInvalidRequest,
    LwaInvalidToken,
    LwaRetryableError,
)
from drs_core.observability import logger
from sandbox.simulator.control import SimulatorControl, s256_challenge
from tests.support.clients import (
    CLIENT_ID,
    CLIENT_SECRET,
    DEFAULT_SLOTS,
    FAST_TIMEOUTS,
    MODEL_ID,
    LinkedDevice,
    fast_session,
)

Link = Callable[..., LinkedDevice]


def _recording_lwa(
    sim: SimulatorControl, sent: list[requests.PreparedRequest], secret: object = CLIENT_SECRET
) -> LwaClient:
    session = fast_session()
    session.hooks["response"].append(lambda response, *args, **kwargs: sent.append(response.request))
    return LwaClient(sim.url, CLIENT_ID, secret, session=session, timeouts=FAST_TIMEOUTS)  # type: ignore[arg-type]


def _form(request: requests.PreparedRequest) -> dict[str, str]:
    body = request.body if isinstance(request.body, str) else (request.body or b"").decode()
    return {key: values[0] for key, values in parse_qs(body).items()}


# --- code exchange ---------------------------------------------------------------------------------------


def test_web_code_exchange_sends_the_secret_and_returns_a_grant(sim: SimulatorControl) -> None:
    # Given a customer who authorised a device
    customer = sim.create_customer()["customerId"]
    code, redirect_uri = sim.authorize(customer, model_id=MODEL_ID, serial="SNWEB1", slots=DEFAULT_SLOTS)
    sent: list[requests.PreparedRequest] = []
    lwa = _recording_lwa(sim, sent)

    # When the code is exchanged
    grant = lwa.exchange_code(code, redirect_uri)

    # Then a bearer grant for one hour came back, from a form POST carrying the secret
    assert grant.access_token and grant.refresh_token
    assert (grant.expires_in, grant.token_type.lower()) == (3600, "bearer")
    assert sent[0].method == "POST"
    assert sent[0].path_url == "/auth/o2/token"
    assert sent[0].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert _form(sent[0]) == {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": redirect_uri,
    }
    assert [(c["operation"], c["method"], c["path"], c["status"]) for c in sim.calls()] == [
        ("token", "POST", "/auth/o2/token", 200)
    ]


def test_pkce_code_exchange_sends_the_verifier_and_no_secret(sim: SimulatorControl) -> None:
    # Given a mobile-app authorisation bound to an S256 challenge, and a client without a secret
    verifier = secrets.token_urlsafe(48)
    customer = sim.create_customer()["customerId"]
    code, redirect_uri = sim.authorize(
        customer,
        model_id=MODEL_ID,
        serial="SNPKCE1",
        slots=DEFAULT_SLOTS,
        code_challenge=s256_challenge(verifier),
    )
    sent: list[requests.PreparedRequest] = []
    lwa = _recording_lwa(sim, sent, secret=None)

    # When the code is exchanged with the verifier
    grant = lwa.exchange_code(code, redirect_uri, code_verifier=verifier)

    # Then the tokens work and the form carried the verifier but no secret
    assert DrsClient(sim.url, session=fast_session()).subscription_info(grant.access_token).slots
    form = _form(sent[0])
    assert form["code_verifier"] == verifier
    assert "client_secret" not in form
    assert form["grant_type"] == "authorization_code"


def test_pkce_exchange_with_the_wrong_verifier_is_an_invalid_grant(sim: SimulatorControl) -> None:
    # Given an authorisation bound to one verifier's challenge
    customer = sim.create_customer()["customerId"]
    code, redirect_uri = sim.authorize(
        customer,
        model_id=MODEL_ID,
        serial="SNPKCE2",
        slots=DEFAULT_SLOTS,
        code_challenge=s256_challenge(secrets.token_urlsafe(48)),
    )
    lwa = LwaClient(sim.url, CLIENT_ID, session=fast_session(), timeouts=FAST_TIMEOUTS)

    # When another verifier is presented
    # Then LWA refuses the grant
    with pytest.raises(LwaInvalidGrant):
        lwa.exchange_code(code, redirect_uri, code_verifier=secrets.token_urlsafe(48))


def test_web_exchange_without_a_secret_fails_before_calling(sim: SimulatorControl) -> None:
    # Given a client configured without a secret
    lwa = LwaClient(sim.url, CLIENT_ID, session=fast_session(), timeouts=FAST_TIMEOUTS)

    # When a web exchange (no verifier) is attempted
    with pytest.raises(ValueError, match="client secret"):
        lwa.exchange_code("any-code", "https://localhost/callback")

    # Then nothing was sent
    assert sim.calls() == []


def test_reused_code_is_an_invalid_grant_and_the_first_tokens_stay_valid(
    sim: SimulatorControl, lwa: LwaClient, link_device: Link
) -> None:
    # Given a code already exchanged once
    device = link_device()

    # When it is exchanged again
    with pytest.raises(LwaInvalidGrant) as raised:
        lwa.exchange_code(device.code, "https://localhost/callback")

    # Then LWA answers 400 invalid_grant, the code is not in the error, and the first token still works
    assert (raised.value.status, raised.value.error) == (400, "invalid_grant")
    assert device.code not in str(raised.value)
    assert lwa.token_info(device.token).expires_in > 0


@pytest.mark.parametrize("code", ["not a code!", "AN" + "x" * 300])
def test_a_malformed_code_is_an_invalid_request_the_linking_takes_as_a_bad_code(
    lwa: LwaClient, code: str
) -> None:
    # Given a code that is not even shaped like one (LWA answers 400 invalid_request, not invalid_grant)
    # When it is exchanged
    with pytest.raises(LwaInvalidRequest) as raised:
        lwa.exchange_code(code, "https://localhost/callback")

    # Then the error says so, as a refused code, and does not quote the code
    assert (raised.value.status, raised.value.error) == (400, "invalid_request")
    assert code not in str(raised.value)


def test_expired_code_is_an_invalid_grant(sim: SimulatorControl, lwa: LwaClient) -> None:
    # Given a code left unused for more than 5 simulated minutes
    customer = sim.create_customer()["customerId"]
    code, redirect_uri = sim.authorize(customer, model_id=MODEL_ID, serial="SNLATE1", slots=DEFAULT_SLOTS)
    sim.advance_clock(301)

    # When it is exchanged
    # Then it is refused
    with pytest.raises(LwaInvalidGrant):
        lwa.exchange_code(code, redirect_uri)


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [(CLIENT_ID, "wrong-secret"), ("amzn1.application-oa2-client.unknown", CLIENT_SECRET)],
    ids=["wrong-secret", "unknown-client"],
)
def test_wrong_client_credentials_are_an_invalid_client(
    sim: SimulatorControl, client_id: str, secret: str
) -> None:
    # Given a client with a wrong secret or an unknown client id
    customer = sim.create_customer()["customerId"]
    code, redirect_uri = sim.authorize(customer, model_id=MODEL_ID, serial="SNBADC1", slots=DEFAULT_SLOTS)
    lwa = LwaClient(sim.url, client_id, secret, session=fast_session(), timeouts=FAST_TIMEOUTS)

    # When it exchanges a good code
    with pytest.raises(LwaInvalidClient) as raised:
        lwa.exchange_code(code, redirect_uri)

    # Then LWA answers 401 invalid_client, once (not retried), and the secret is not in the error
    assert (raised.value.status, raised.value.error) == (401, "invalid_client")
    assert secret not in str(raised.value)
    assert [c["status"] for c in sim.calls("token")] == [401]


def test_callable_secret_is_fetched_only_when_a_call_needs_it(sim: SimulatorControl) -> None:
    # Given a client whose secret comes from a (counting) callable
    fetched: list[int] = []

    def fetch_secret() -> str:
        fetched.append(1)
        return CLIENT_SECRET

    lwa = LwaClient(sim.url, CLIENT_ID, fetch_secret, session=fast_session(), timeouts=FAST_TIMEOUTS)
    customer = sim.create_customer()["customerId"]
    code, redirect_uri = sim.authorize(customer, model_id=MODEL_ID, serial="SNLAZY1", slots=DEFAULT_SLOTS)
    assert fetched == []

    # When a web exchange and a tokeninfo call are made
    grant = lwa.exchange_code(code, redirect_uri)
    lwa.token_info(grant.access_token)

    # Then the secret was fetched for the exchange only
    assert fetched == [1]


# --- refresh ---------------------------------------------------------------------------------------------


def test_refresh_gives_a_working_access_token(
    sim: SimulatorControl, lwa: LwaClient, link_device: Link
) -> None:
    # Given a device whose access token expired
    device = link_device()
    sim.advance_clock(3601)
    drs = DrsClient(sim.url, session=fast_session(), timeouts=FAST_TIMEOUTS)
    with pytest.raises(DrsTokenRejected):
        drs.device_status(device.token, datetime(2026, 1, 1, tzinfo=UTC))

    # When the refresh token is used
    fresh = lwa.refresh(device.grant.refresh_token)

    # Then the new access token works for DRS and the refresh token did not rotate
    assert fresh.access_token != device.token
    assert fresh.refresh_token == device.grant.refresh_token
    assert fresh.expires_in == 3600
    drs.device_status(fresh.access_token, datetime(2026, 1, 1, tzinfo=UTC))
    assert sim.calls("token")[-1]["status"] == 200


def test_refresh_after_deregistration_is_an_invalid_grant(
    lwa: LwaClient, link_device: Link, sim: SimulatorControl
) -> None:
    # Given a device that deregistered
    device = link_device()
    DrsClient(sim.url, session=fast_session(), timeouts=FAST_TIMEOUTS).deregister(device.token)

    # When its refresh token is used
    with pytest.raises(LwaInvalidGrant) as raised:
        lwa.refresh(device.grant.refresh_token)

    # Then LWA refuses it and the refresh token is not in the error
    assert raised.value.status == 400
    assert device.grant.refresh_token not in str(raised.value)


# --- tokeninfo -------------------------------------------------------------------------------------------


def test_token_info_describes_the_token(sim: SimulatorControl, lwa: LwaClient, link_device: Link) -> None:
    # Given a token issued at the current simulated time, and 600 s passing
    device = link_device()
    issued_at = parse_iso(sim.calls("token")[-1]["at"])
    sim.advance_clock(600)
    sent: list[requests.PreparedRequest] = []
    recording = _recording_lwa(sim, sent)

    # When it is inspected
    info = recording.token_info(device.token)

    # Then it names our client and the customer, with 3000 s left, issued when the code was exchanged
    assert info.aud == CLIENT_ID
    assert info.user_id == device.customer_id
    assert info.app_id
    assert info.iss
    assert info.expires_in == 3000
    assert info.issued_at == int(issued_at.timestamp())
    assert sent[0].method == "GET"
    assert sent[0].path_url.startswith("/auth/o2/tokeninfo?access_token=")
    assert [(c["operation"], c["method"], c["path"], c["status"]) for c in sim.calls("tokeninfo")] == [
        ("tokeninfo", "GET", "/auth/o2/tokeninfo", 200)
    ]


@pytest.mark.parametrize("expire", [False, True], ids=["unknown", "expired"])
def test_bad_token_is_an_invalid_token(
    sim: SimulatorControl, lwa: LwaClient, link_device: Link, expire: bool
) -> None:
    # Given a token LWA never issued, or one that expired
    if expire:
        token = link_device().token
        sim.advance_clock(3601)
    else:
        token = "Atza|never-issued"

    # When it is inspected
    with pytest.raises(LwaInvalidToken) as raised:
        lwa.token_info(token)

    # Then LWA answers 400 invalid_token without the token in the error
    assert (raised.value.status, raised.value.error) == (400, "invalid_token")
    assert token not in str(raised.value)


# --- retries ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 429])
def test_token_fault_is_retried_until_success(
    sim: SimulatorControl, lwa: LwaClient, link_device: Link, status: int
) -> None:
    # Given the token endpoint fails the 1st and 2nd calls (rate 0.5, seed 7, see test_drs_client)
    sim.set_fault("token", 0.5, status=status, seed=7)

    # When a device is linked (one code exchange)
    device = link_device()

    # Then the exchange succeeded on the third attempt
    assert device.grant.access_token
    assert [c["status"] for c in sim.calls("token")] == [status, status, 200]


def test_persistent_tokeninfo_fault_is_retryable_after_max_attempts(
    sim: SimulatorControl, link_device: Link
) -> None:
    # Given tokeninfo always answers 503
    device = link_device()
    sim.set_fault("tokeninfo", 1.0, status=503)
    lwa = LwaClient(
        sim.url, CLIENT_ID, CLIENT_SECRET, session=fast_session(max_attempts=3), timeouts=FAST_TIMEOUTS
    )

    # When the token is inspected
    with pytest.raises(LwaRetryableError) as raised:
        lwa.token_info(device.token)

    # Then exactly three calls were made and the last status is kept
    assert raised.value.status == 503
    assert len(sim.calls("tokeninfo")) == 3


def test_token_bad_request_fault_is_not_retried(
    sim: SimulatorControl, link_device: Link, lwa: LwaClient
) -> None:
    # Given the token endpoint always answers 400 (an injected OAuth error)
    device = link_device()
    sim.set_fault("token", 1.0, status=400)

    # When a refresh is attempted
    with pytest.raises(LwaError) as raised:
        lwa.refresh(device.grant.refresh_token)

    # Then it failed once, without retry, as a non-retryable LWA error
    assert not isinstance(raised.value, LwaRetryableError)
    assert raised.value.status == 400
    assert [c["status"] for c in sim.calls("token")] == [200, 400]


def test_tokeninfo_read_timeout_is_retryable(sim: SimulatorControl, link_device: Link) -> None:
    # Given tokeninfo answers only after 1 s and the client waits 100 ms per attempt
    device = link_device()
    sim.set_fault("tokeninfo", 1.0, status=200, latency_ms=1000)
    lwa = LwaClient(
        sim.url,
        CLIENT_ID,
        CLIENT_SECRET,
        session=fast_session(max_attempts=2),
        timeouts=Timeouts(connect=1.0, read=0.1),
    )

    # When the token is inspected
    with pytest.raises(LwaRetryableError) as raised:
        lwa.token_info(device.token)

    # Then it surfaced as retryable without a status, and the error chain does not carry the URL (token)
    assert raised.value.status is None
    assert raised.value.__cause__ is None
    assert device.token not in str(raised.value)


# --- nothing secret in reprs or logs ---------------------------------------------------------------------


def test_token_grant_repr_hides_both_tokens() -> None:
    # Given a grant
    grant = TokenGrant(
        access_token="Atza|a-secret", refresh_token="Atzr|r-secret", expires_in=3600, token_type="bearer"
    )

    # When it is rendered
    text = f"{grant!r} {grant}"

    # Then neither token shows, the harmless fields do
    assert "Atza|a-secret" not in text
    assert "Atzr|r-secret" not in text
    assert "3600" in text and "bearer" in text


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[io.StringIO, pytest.LogCaptureFixture]]:
    """Powertools JSON lines (its handler writes to the stdout it saw at import) and every stdlib record."""
    buffer = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous_stream = handler.setStream(buffer)
    previous_level = logger.log_level
    logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    try:
        yield buffer, caplog
    finally:
        logger.setLevel(previous_level)
        handler.setStream(previous_stream)


def test_full_flow_logs_no_token_code_or_secret(
    sim: SimulatorControl, captured_logs: tuple[io.StringIO, pytest.LogCaptureFixture]
) -> None:
    # Given debug logging everywhere, and clients that will retry and time out along the way
    buffer, caplog = captured_logs
    lwa = LwaClient(sim.url, CLIENT_ID, CLIENT_SECRET, session=fast_session(), timeouts=FAST_TIMEOUTS)
    drs = DrsClient(sim.url, session=fast_session(), timeouts=FAST_TIMEOUTS)
    slow_lwa = LwaClient(
        sim.url, CLIENT_ID, CLIENT_SECRET, session=fast_session(max_attempts=2), timeouts=Timeouts(1.0, 0.1)
    )
    customer = sim.create_customer()["customerId"]
    code, redirect_uri = sim.authorize(
        customer, model_id=MODEL_ID, serial="SNLOG01", slots=DEFAULT_SLOTS, is_test_device=True
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    errors: list[Exception] = []

    # When a device goes through its whole life: link, inspect, every DRS call, faults, refresh, errors
    sim.set_fault("token", 0.5, status=500, seed=7)
    grant = lwa.exchange_code(code, redirect_uri)
    sim.set_fault("token", 0)
    lwa.token_info(grant.access_token)
    sim.set_fault("replenish", 0.5, status=429, seed=7)
    placed = drs.replenish(grant.access_token, "Filter")
    sim.set_fault("replenish", 0)
    assert placed.event_instance_id is not None
    drs.slot_status(grant.access_token, "Filter", SlotStatusReport(now, 1.5, 2, 1.5, now))
    drs.device_status(grant.access_token, now)
    drs.subscription_info(grant.access_token)
    drs.get_order_info(grant.access_token, placed.event_instance_id)
    drs.cancel_test_orders(grant.access_token)
    sim.set_fault("tokeninfo", 1.0, status=200, latency_ms=1000)
    with pytest.raises(LwaRetryableError) as timed_out:
        slow_lwa.token_info(grant.access_token)
    errors.append(timed_out.value)
    sim.set_fault("tokeninfo", 0)
    with pytest.raises(LwaInvalidGrant) as reused:
        lwa.exchange_code(code, redirect_uri)
    errors.append(reused.value)
    fresh = lwa.refresh(grant.refresh_token)
    drs.deregister(fresh.access_token)
    with pytest.raises(DrsTokenRejected) as rejected:
        drs.device_status(fresh.access_token, now)
    errors.append(rejected.value)
    with pytest.raises(LwaInvalidGrant) as revoked:
        lwa.refresh(grant.refresh_token)
    errors.append(revoked.value)

    # Then the debug lines were written (one per DRS/LWA call, with operation, status and timing) ...
    powertools_output = buffer.getvalue()
    assert '"operation":"replenish"' in powertools_output.replace(" ", "")
    assert '"elapsed_ms"' in powertools_output
    assert powertools_output.count('"DRS call"') == 8
    # ... urllib3 logged its retries (redacted) ...
    stdlib_output = "\n".join(record.getMessage() for record in caplog.records)
    assert "Retrying" in stdlib_output
    assert "access_token=***" in stdlib_output
    # ... and no token, code or secret appears in any log line or error
    everything = powertools_output + stdlib_output + "".join(f"{e!s} {e!r}" for e in errors)
    for secret in (grant.access_token, grant.refresh_token, fresh.access_token, code, CLIENT_SECRET):
        assert secret not in everything
