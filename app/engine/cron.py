"""Cron expressions of `schedule` triggers: checked when a workflow is saved, ticks computed in
the trigger's time zone (so "0 9 * * *" in Europe/Berlin stays 09:00 across DST changes).

Pure: no I/O beyond reading the time zone database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

#: Nicknames croniter understands, besides five fields.
NICKNAMES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


class InvalidSchedule(ValueError):
    """A cron expression or time zone that cannot be scheduled; the message says why."""


def check_cron(expression: str) -> str:
    """The expression, stripped; InvalidSchedule unless it is five fields or a nickname.

    Six-field (seconds) expressions are refused: beat looks for due schedules every few
    seconds, so a per-second schedule could not be honoured.
    """
    stripped = " ".join(expression.split())
    if stripped.lower() in NICKNAMES:
        return stripped.lower()
    fields = stripped.split(" ")
    if len(fields) != 5:
        raise InvalidSchedule(
            f"cron expression {expression!r} must have 5 fields (minute hour day-of-month "
            f"month day-of-week) or be one of {', '.join(sorted(NICKNAMES))}"
        )
    if not croniter.is_valid(stripped):
        raise InvalidSchedule(f"cron expression {expression!r} is not valid")
    return stripped


def check_timezone(name: str) -> str:
    """The name; InvalidSchedule unless it is an IANA time zone."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None
    return name


def next_tick(expression: str, timezone: str, after: datetime) -> datetime:
    """The first tick strictly after `after`, in UTC."""
    local = after.astimezone(ZoneInfo(timezone))
    tick: datetime = croniter(expression, local).get_next(datetime)
    return tick.astimezone(UTC)


def latest_tick(expression: str, timezone: str, at: datetime) -> datetime:
    """The last tick at or before `at`, in UTC (croniter's get_prev is strictly before)."""
    start = at.astimezone(ZoneInfo(timezone)).replace(microsecond=0) + timedelta(seconds=1)
    tick: datetime = croniter(expression, start).get_prev(datetime)
    return tick.astimezone(UTC)
