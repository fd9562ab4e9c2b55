"""Attack on 1d5fdf5: overdue_since with its new early return (missed_rotation) against the
implementation before it (7ab231b), over schedules, zones (with DST), and times on and
around fire times."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from keysyncd.core import due as new_due
from keysyncd.core.journal import RepositoryState
from keysyncd.errors import KeysyncError


def old_overdue_since(state: RepositoryState, schedule: str, timezone: str, now: float):
    """overdue_since as 7ab231b had it."""
    since = new_due.rotated_since(state)
    if since is None:
        return None
    due = new_due.rotation_due(schedule, timezone, since)
    return due.due_at if due is not None and due.overdue(now) else None


SCHEDULES = [
    "0 0 * * *",
    "*/30 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "*/20 2 * * *",
    "0 0 1 * *",
    "0 0 * * 0",
    "* * * * * *",
    "0 0 30 2 *",
    "0 0 29 2 *",
    "0 0 * *",
    "61 * * * *",
]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Nowhere/Zone"]
# around a fall-back and a spring-forward in Berlin and New York, and the epoch
ANCHORS = [0.0, 1792886400.0, 1774746000.0, 1793595600.0, 1772953200.0]


def outcome(call):
    try:
        return ("value", call())
    except Exception as error:
        return ("raises", type(error).__name__)


@settings(max_examples=300, deadline=None)
@given(
    schedule=st.sampled_from(SCHEDULES),
    zone=st.sampled_from(ZONES),
    anchor=st.sampled_from(ANCHORS),
    since_offset=st.integers(-4 * 86400, 4 * 86400).map(float)
    | st.floats(-4 * 86400, 4 * 86400, allow_nan=False),
    now_offset=st.integers(-86400, 40 * 86400).map(float),
    on_fire=st.booleans(),
)
def test_overdue_since_is_what_it_was(schedule, zone, anchor, since_offset, now_offset, on_fire):
    since = anchor + since_offset
    now = since + now_offset
    if on_fire:  # put now exactly on the due fire time, or a half period after it
        try:
            due = new_due.rotation_due(schedule, zone, since)
        except KeysyncError:
            due = None
        if due is not None:
            now = due.due_at if now_offset < 0 else due.overdue_at + (now_offset % 2)
    state = RepositoryState("r", last_rotation_at=since)
    old = outcome(lambda: old_overdue_since(state, schedule, zone, now))
    new = outcome(lambda: new_due.overdue_since(state, schedule, zone, now))
    assert new == old, (schedule, zone, since, now)


@settings(max_examples=300, deadline=None)
@given(
    schedule=st.sampled_from(SCHEDULES),
    zone=st.sampled_from(ZONES),
    anchor=st.sampled_from(ANCHORS),
    since_offset=st.integers(-4 * 86400, 4 * 86400).map(float)
    | st.floats(-4 * 86400, 4 * 86400, allow_nan=False),
    now_offset=st.integers(-86400, 40 * 86400).map(float),
)
def test_overdue_since_differs_only_where_the_old_one_named_a_future_time(
    schedule, zone, anchor, since_offset, now_offset
):
    since = anchor + since_offset
    now = since + now_offset
    state = RepositoryState("r", last_rotation_at=since)
    old = outcome(lambda: old_overdue_since(state, schedule, zone, now))
    new = outcome(lambda: new_due.overdue_since(state, schedule, zone, now))
    if old[0] == "value" and old[1] is not None and old[1] > now:
        assert new == ("value", None)
    else:
        assert new == old, (schedule, zone, since, now)


def test_status_and_the_metric_agree_on_overdue_at_a_dst_fall_back() -> None:
    """overdue_since's docstring: the rule status, the metric and the alert share. The metric
    (metricfamilies.add_rotation_due) still says due.overdue(now); status now also asks
    missed_rotation first. Half-hourly in Berlin, last rotated 02:29 CEST on 2026-10-25 (due
    02:30 CEST), asked one second later: the metric says overdue (its 'period' is -30 min:
    overdue_at 02:15), status says not; before 1d5fdf5 both said overdue."""
    since = datetime(2026, 10, 25, 0, 29, 0, tzinfo=UTC).timestamp()
    now = since + 1  # one second after the rotation: nothing can be overdue
    due = new_due.rotation_due("*/30 * * * *", "Europe/Berlin", since)
    assert due is not None
    metric_overdue = due.overdue(now)
    state = RepositoryState("r", last_rotation_at=since)
    status_overdue = new_due.overdue_since(state, "*/30 * * * *", "Europe/Berlin", now) is not None
    assert metric_overdue == status_overdue


def test_the_rotation_period_is_positive_across_a_dst_fall_back() -> None:
    """Pre-existing (not 1d5fdf5): the gap between two fire times in one ZoneInfo is taken
    naively (same tzinfo: offsets ignored), and the trigger repeats the fold hour, so the
    'period' is 0 or negative and overdue_at falls before due_at."""
    from keysyncd.core.schedule import cron_trigger, rotation_period

    after = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)
    for schedule in ("*/30 * * * *", "0 * * * *", "*/20 2 * * *"):
        assert rotation_period(cron_trigger(schedule, "Europe/Berlin"), after) > 0, schedule
