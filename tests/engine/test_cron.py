"""Cron expressions of schedule triggers: refused when unschedulable, ticked in their zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.engine.cron import InvalidSchedule, check_cron, check_timezone, latest_tick, next_tick
from app.engine.schema import TriggerConfig


def test_five_fields_and_nicknames_are_accepted_and_normalised() -> None:
    assert check_cron(" */5  * * * * ") == "*/5 * * * *"
    assert check_cron("@Hourly") == "@hourly"


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("*/5 * * *", "must have 5 fields"),
        ("* * * * * *", "must have 5 fields"),  # seconds: beat cannot honour them
        ("61 * * * *", "is not valid"),
        ("every monday", "must have 5 fields"),
    ],
)
def test_unschedulable_expressions_are_refused_with_the_reason(expression: str, says: str) -> None:
    with pytest.raises(InvalidSchedule, match=says):
        check_cron(expression)


def test_an_unknown_time_zone_is_refused_with_an_example() -> None:
    with pytest.raises(InvalidSchedule, match="IANA name such as 'UTC'"):
        check_timezone("Mars/Olympus")


def test_next_tick_is_strictly_after_and_in_utc() -> None:
    at = datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    assert next_tick("*/5 * * * *", "UTC", at) == datetime(2026, 1, 1, 10, 10, tzinfo=UTC)


def test_latest_tick_includes_a_tick_exactly_now() -> None:
    assert latest_tick("*/5 * * * *", "UTC", datetime(2026, 1, 1, 10, 5, tzinfo=UTC)) == (
        datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    )
    assert latest_tick("*/5 * * * *", "UTC", datetime(2026, 1, 1, 10, 9, 59, tzinfo=UTC)) == (
        datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    )


def test_a_local_time_stays_local_across_a_dst_change() -> None:
    before = next_tick("0 9 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC))
    after = next_tick("0 9 * * *", "Europe/Berlin", before)
    assert before == datetime(2026, 3, 29, 7, tzinfo=UTC)  # CEST: UTC+2 from 29 March
    assert after == datetime(2026, 3, 30, 7, tzinfo=UTC)
    assert next_tick("0 9 * * *", "Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=UTC)) == (
        datetime(2026, 3, 28, 8, tzinfo=UTC)  # CET: UTC+1
    )


def test_a_schedule_trigger_without_cron_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a cron expression"):
        TriggerConfig.model_validate({"type": "schedule"})


def test_other_triggers_need_no_cron() -> None:
    assert TriggerConfig.model_validate({"type": "manual"}).cron is None
