"""A schedule's weekdays mean what crontab means (Sunday is 0 and 7, Monday 1), although
APScheduler 3 numbers them from Monday: "0 0 * * 1" fires on Mondays, not Tuesdays."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keysyncd.core.schedule import cron_trigger, next_fire_times
from keysyncd.errors import KeysyncError

CASES = {
    "1": {"Mon"},
    "0": {"Sun"},
    "7": {"Sun"},
    "1-5": {"Mon", "Tue", "Wed", "Thu", "Fri"},
    "0-6": {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"},
    "0-7": {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"},
    "5-7": {"Fri", "Sat", "Sun"},
    "*/2": {"Sun", "Tue", "Thu", "Sat"},
    "1-5/2": {"Mon", "Wed", "Fri"},
    "6,0": {"Sat", "Sun"},
    "mon": {"Mon"},
    "MON-FRI": {"Mon", "Tue", "Wed", "Thu", "Fri"},
    "fri-sun": {"Fri", "Sat", "Sun"},
    "sun,3": {"Sun", "Wed"},
    "7-7": {"Sun"},
    "0-0": {"Sun"},
    "sun-sat": {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"},
    "*/7": {"Sun"},
    "1,1": {"Mon"},
    "1-7/3": {"Mon", "Thu", "Sun"},
}


@pytest.mark.parametrize(("field", "days"), sorted(CASES.items()))
def test_weekdays_are_crontabs(field: str, days: set[str]) -> None:
    trigger = cron_trigger(f"30 3 * * {field}")
    fired = next_fire_times(trigger, datetime(2026, 12, 6, tzinfo=UTC), 21)  # three weeks
    assert {time.strftime("%a") for time in fired} == days
    assert all(time.strftime("%H:%M") == "03:30" for time in fired)


def test_six_fields_read_the_weekday_alike() -> None:
    fired = next_fire_times(cron_trigger("0 30 3 * * 1"), datetime(2026, 12, 6, tzinfo=UTC), 3)
    assert {time.strftime("%a") for time in fired} == {"Mon"}


@pytest.mark.parametrize(
    "field", ["8", "x", "5-1", "1/0", "-1", "7-6", "7-1", "7/2", "1/2", "\u0661", "L", "?"]
)
def test_a_weekday_crontab_would_refuse_is_refused(field: str) -> None:
    with pytest.raises(KeysyncError, match="invalid cron expression"):
        cron_trigger(f"0 0 * * {field}")


def test_a_day_of_month_and_a_weekday_together_are_refused() -> None:
    with pytest.raises(KeysyncError, match="not both"):
        cron_trigger("0 0 1 * 1")


def test_a_starred_day_with_a_weekday_means_both_as_in_crontab() -> None:
    # crontab ANDs the two when either field starts with "*": every other day, Mondays only
    fired = next_fire_times(cron_trigger("0 0 */2 * 1"), datetime(2026, 12, 6, tzinfo=UTC), 6)
    assert {time.strftime("%a") for time in fired} == {"Mon"}
    assert all(time.day % 2 == 1 for time in fired)  # */2 from day 1: the odd days
