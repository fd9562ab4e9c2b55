"""Node backoff (core/nodes.py) and schedule decisions (core/schedule.py), as pure values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keysyncd.core.journal import NodeRecord, RepositoryState
from keysyncd.core.nodes import (
    BACKOFF_CAP,
    backoff_delay,
    due_nodes,
    record_nodes,
    schedule_backoff,
)
from keysyncd.core.report import NodeOutcome
from keysyncd.core.schedule import (
    cron_trigger,
    missed_rotation,
    next_fire_times,
    rotation_period,
)
from keysyncd.errors import KeysyncError

NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("failures", "base", "jitter", "expected"),
    [
        (0, 10.0, 1.0, 10.0),
        (1, 10.0, 1.0, 10.0),
        (2, 10.0, 1.0, 20.0),
        (3, 10.0, 0.5, 20.0),
        (5, 10.0, 1.0, 160.0),  # 16 bases: the cap for a small base
        (9, 10.0, 1.0, 160.0),
        (9, 10.0, 0.75, 120.0),
        (3, 1000.0, 1.0, BACKOFF_CAP),  # 4000 s, capped at an hour
        (40, 1000.0, 0.5, BACKOFF_CAP / 2),
    ],
)
def test_backoff_doubles_up_to_its_cap_and_is_jittered(
    failures: int, base: float, jitter: float, expected: float
) -> None:
    assert backoff_delay(failures, base, jitter) == pytest.approx(expected)


def test_only_unreachable_and_timed_out_nodes_back_off() -> None:
    state = RepositoryState("r", nodes={"n2": NodeRecord(failures=2, next_attempt_at=5.0)})
    checks = {
        "n1": NodeOutcome("failed", reason="unreachable"),
        "n2": NodeOutcome("failed", reason="timeout"),
        "n3": NodeOutcome("failed", reason="host_key"),
        "n4": NodeOutcome("in_sync"),
    }
    jitters = iter([1.0, 0.5])
    after = schedule_backoff(state, checks, 100.0, 10.0, lambda: next(jitters))
    assert dict(after.nodes) == {
        "n1": NodeRecord(failures=1, next_attempt_at=110.0),
        "n2": NodeRecord(failures=3, next_attempt_at=120.0),  # 40 s, jittered by half
    }


def test_a_node_that_answers_loses_its_backoff() -> None:
    state = RepositoryState(
        "r",
        generation=4,
        nodes={n: NodeRecord(failures=3, next_attempt_at=500.0) for n in ("n1", "n2", "n3")},
    )
    checks = {
        "n1": NodeOutcome("in_sync"),
        "n2": NodeOutcome("failed", reason="unreachable", error="refused"),
        "n3": NodeOutcome("failed", reason="host_key", error="changed"),
    }
    nodes = record_nodes(state, checks, 100.0).nodes
    assert nodes["n1"] == NodeRecord(
        "in_sync", None, None, 100.0, last_verified_at=100.0, generation=4
    )
    assert nodes["n2"] == NodeRecord(
        "failed", "unreachable", "refused", 100.0, failures=3, next_attempt_at=500.0
    )
    assert nodes["n3"] == NodeRecord("failed", "host_key", "changed", 100.0)


def test_due_nodes_are_those_not_backing_off_now() -> None:
    state = RepositoryState(
        "r",
        nodes={
            "later": NodeRecord(next_attempt_at=101.0),
            "now": NodeRecord(next_attempt_at=100.0),
            "never": NodeRecord(),
        },
    )
    names = ["later", "now", "never", "new"]
    assert due_nodes(state, names, 100.0) == (["now", "never", "new"], ["later"])
    assert due_nodes(state, names, 101.0) == (names, [])


def test_cron_expressions_with_five_or_six_fields() -> None:
    after = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
    five = next_fire_times(cron_trigger("*/15 * * * *"), after, 3)
    assert [t.strftime("%H:%M:%S") for t in five] == ["12:15:00", "12:30:00", "12:45:00"]
    six = next_fire_times(cron_trigger("*/20 * * * * *"), after, 3)
    assert [t.strftime("%H:%M:%S") for t in six] == ["12:00:20", "12:00:40", "12:01:00"]
    berlin = next_fire_times(cron_trigger("0 3 * * *", "Europe/Berlin"), after, 1)
    assert berlin[0].astimezone(UTC).strftime("%d %H:%M") == "28 02:00"
    assert next_fire_times(cron_trigger("0 * * * *"), after, 0) == []


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [
        (
            "* * * *",
            "UTC",
            "expected 5 fields (minute hour day month weekday) or 6 with leading seconds, got 4",
        ),
        ("61 * * * *", "UTC", "invalid cron expression '61 * * * *': "),
        ("0 0 * * *", "Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
    ],
)
def test_bad_schedules_are_named(expression: str, zone: str, message: str) -> None:
    with pytest.raises(KeysyncError) as caught:
        cron_trigger(expression, zone)
    assert message in str(caught.value)


def test_the_rotation_period_is_the_shortest_gap() -> None:
    after = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert rotation_period(cron_trigger("0 */6 * * *"), after) == 6 * 3600
    assert rotation_period(cron_trigger("0 1,2 * * *"), after) == 3600  # 1:00 -> 2:00
    with pytest.raises(KeysyncError, match="fires fewer than twice"):
        rotation_period(cron_trigger("0 0 1 1 *"), after, samples=1)


def test_a_missed_rotation_is_one_due_between_the_last_and_now() -> None:
    hourly = "0 * * * *"
    assert not missed_rotation(hourly, "UTC", None, NOON), "never rotated: nothing to catch up"
    assert not missed_rotation(hourly, "UTC", NOON, NOON + 3599)
    assert missed_rotation(hourly, "UTC", NOON, NOON + 3600)
    assert not missed_rotation(hourly, "UTC", NOON - 1, NOON - 0.5)
    assert missed_rotation(hourly, "UTC", NOON - 1, NOON)
    # a rotation exactly at a fire time has that fire behind it
    assert not missed_rotation(hourly, "UTC", NOON, NOON + 1)
