"""Cron expressions: parse them with APScheduler and answer "when next?".

A schedule is a 5-field crontab (``minute hour day month day_of_week``) or a
6-field one with a leading seconds field (for tests and demos).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from keysyncd.errors import KeysyncError

_FIELDS_6 = ("second", "minute", "hour", "day", "month", "day_of_week")


def cron_trigger(expression: str, timezone: str = "UTC") -> CronTrigger:
    """Return the APScheduler trigger for ``expression``; raise KeysyncError if invalid.

    Example: ``cron_trigger("*/5 * * * * *")`` fires every five seconds.
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise KeysyncError(f"unknown timezone {timezone!r}") from error
    fields = expression.split()
    try:
        if len(fields) == 5:
            return CronTrigger.from_crontab(expression, timezone=zone)
        if len(fields) == 6:
            return CronTrigger(**dict(zip(_FIELDS_6, fields, strict=True)), timezone=zone)
    except ValueError as error:
        raise KeysyncError(f"invalid cron expression {expression!r}: {error}") from error
    raise KeysyncError(
        f"invalid cron expression {expression!r}: expected 5 fields "
        f"(minute hour day month weekday) or 6 with leading seconds, got {len(fields)}"
    )


def next_fire_times(trigger: CronTrigger, after: datetime, count: int) -> list[datetime]:
    """Return the next ``count`` fire times after ``after`` (fewer if the schedule ends)."""
    times: list[datetime] = []
    previous: datetime | None = None
    now = after + timedelta(microseconds=1)
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None:
            break
        times.append(fire)
        previous = fire
        now = fire + timedelta(microseconds=1)
    return times


def rotation_period(trigger: CronTrigger, after: datetime, samples: int = 32) -> float:
    """Return the shortest gap in seconds between consecutive fire times after ``after``.

    The shortest gap is the conservative choice for the keystone sizing rule: keys are
    demoted fastest then, so it needs the most active keys.
    Raise KeysyncError if the schedule fires fewer than twice.
    """
    times = next_fire_times(trigger, after, samples)
    if len(times) < 2:
        raise KeysyncError("the schedule fires fewer than twice; cannot derive a rotation period")
    return min((b - a).total_seconds() for a, b in itertools.pairwise(times))


def missed_rotation(
    schedule: str, timezone: str, last_rotation_at: float | None, now: float
) -> bool:
    """Return True if a scheduled rotation fell between the last rotation and ``now``.

    A repository that was never rotated by keysyncd has nothing to catch up.
    """
    if last_rotation_at is None:
        return False
    trigger = cron_trigger(schedule, timezone)
    after = datetime.fromtimestamp(last_rotation_at, UTC) + timedelta(microseconds=1)
    due = trigger.get_next_fire_time(None, after)
    return due is not None and due.timestamp() <= now
