"""The `[sync]` section: validated at start, with the setting named in the error."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import ConfigError
from exchange.settings import load_settings

ADAPTER = {
    "id": "hrss.enrolment",
    "kind": "file",
    "department": "人社局",
    "serves": [{"record_type": "social_security.enrolment", "key_kinds": ["ID_CARD"]}],
    "options": {"folder": "exports", "mappings": []},
}
RECORD_TYPES = {"social_security.enrolment": {"fields": {}}}


def settings_with(**sync: Any) -> Any:
    return load_settings(None, record_types=RECORD_TYPES, adapters=[ADAPTER], sync=sync)


def test_defaults_and_schedules() -> None:
    settings = settings_with(
        schedules=[
            {"name": "nightly", "adapter": "hrss.enrolment", "cron": "0 2 * * *", "mode": "full"},
            {"name": "often", "adapter": "hrss.enrolment", "every_seconds": 600},
        ]
    )

    sync = settings.sync
    assert (sync.batch_size, sync.lease_seconds, sync.heartbeat_seconds) == (1000, 30.0, 10.0)
    assert [schedule.mode for schedule in sync.schedules] == ["full", "incremental"]


@pytest.mark.parametrize(
    ("sync", "setting", "message"),
    [
        (
            {"schedules": [{"name": "x", "adapter": "no.such", "every_seconds": 60}]},
            "configuration",
            "names adapter 'no.such', which is not declared",
        ),
        (
            {"schedules": [{"name": "x", "adapter": "hrss.enrolment"}]},
            "sync.schedules[0]",
            "set exactly one of cron and every_seconds",
        ),
        (
            {
                "schedules": [
                    {"name": "x", "adapter": "hrss.enrolment", "cron": "0 2 * *"},
                ]
            },
            "sync.schedules[0]",
            "5 fields",
        ),
        (
            {"schedules": [{"name": "x", "adapter": "hrss.enrolment", "cron": "0 0 30 2 *"}]},
            "sync.schedules[0]",
            "never matches",
        ),
        (
            {
                "schedules": [
                    {"name": "x", "adapter": "hrss.enrolment", "every_seconds": 60},
                    {"name": "x", "adapter": "hrss.enrolment", "every_seconds": 90},
                ]
            },
            "sync",
            "schedule name 'x' is used twice",
        ),
        (
            {"schedules": [{"name": "Bad Name", "adapter": "hrss.enrolment", "every_seconds": 9}]},
            "sync.schedules[0].name",
            "lower-case letters",
        ),
        ({"heartbeat_seconds": 30, "lease_seconds": 30}, "sync", "shorter than lease_seconds"),
        ({"batch_size": 0}, "sync.batch_size", "greater than or equal to 1"),
        ({"mode": "full"}, "sync.mode", "unknown setting"),
        (
            {
                "schedules": [
                    {"name": "x", "adapter": "hrss.enrolment", "every_seconds": 9, "mode": "both"}
                ]
            },
            "sync.schedules[0].mode",
            "'full' or 'incremental'",
        ),
    ],
)
def test_bad_sync_settings_name_the_setting(
    sync: dict[str, Any], setting: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_with(**sync)

    assert raised.value.setting == setting
    assert message in raised.value.rule
