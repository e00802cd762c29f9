"""Typed settings from the environment, and the injectable clock."""

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest

from drs_core.clock import ManualClock, parse_iso, to_iso
from drs_core.settings import ENV_VARS, Settings, SettingsError, load_settings


def test_settings_read_typed_values_from_the_environment():
    env = {"STATE_TABLE": "state", "HTTP_READ_TIMEOUT": "2.5", "HTTP_MAX_ATTEMPTS": "3"}
    settings = load_settings(env, required=["STATE_TABLE"])
    assert (settings.state_table, settings.http_read_timeout, settings.http_max_attempts) == ("state", 2.5, 3)
    assert settings.drs_endpoint == "https://dash-replenishment-service-na.amazon.com"


def test_every_setting_has_exactly_one_environment_variable():
    assert sorted(ENV_VARS.values()) == sorted(field.name for field in fields(Settings))


def test_a_missing_required_setting_names_the_variable():
    with pytest.raises(SettingsError, match="TOKENS_TABLE"):
        load_settings({"STATE_TABLE": "state"}, required=["STATE_TABLE", "TOKENS_TABLE"])


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("HTTP_MAX_ATTEMPTS", "many"),
        ("HTTP_MAX_ATTEMPTS", "0"),
        ("HTTP_MAX_ATTEMPTS", "11"),
        ("HTTP_MAX_ATTEMPTS", "2.5"),
        ("HTTP_READ_TIMEOUT", "0"),
        ("HTTP_CONNECT_TIMEOUT", "-1"),
        ("HTTP_MAX_TOTAL_SECONDS", "soon"),
    ],
)
def test_a_malformed_setting_fails_at_load_naming_the_variable(variable, text):
    with pytest.raises(SettingsError, match=f"{variable}='{text}'"):
        load_settings({variable: text})


def test_manual_clock_moves_only_forward_when_told():
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert clock.now() == clock.now()
    assert clock.advance(3600) == datetime(2026, 1, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_iso_round_trip_keeps_milliseconds_in_utc():
    when = datetime(2026, 5, 17, 8, 30, 1, 123_456, tzinfo=UTC)
    text = to_iso(when)
    assert text == "2026-05-17T08:30:01.123Z"
    assert parse_iso(text) == when - timedelta(microseconds=456)
    assert parse_iso("2026-05-17T10:30:01+02:00") == datetime(2026, 5, 17, 8, 30, 1, tzinfo=UTC)
