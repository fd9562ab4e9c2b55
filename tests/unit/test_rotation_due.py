"""When a rotation is due and overdue (keysyncd.core.due), and the metrics the alert uses.

The numbers of the daily and monthly cases are those the promtool tests of
KeysyncdRotationOverdue feed in (monitoring/keysyncd.rules.test.yml), so the rule is tested
with what keysyncd really exports.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from keysyncd.config import parse_config
from keysyncd.core.due import OVERDUE_PERIODS, RotationDue, rotated_since, rotation_due
from keysyncd.core.journal import RepositoryState
from keysyncd.core.jws import JwsState, Pair
from keysyncd.core.policy import KeyHistory
from keysyncd.io.local.state import save_state
from keysyncd.io.runtime.metrics import StateCollector

DAY = 86400.0


def test_a_daily_schedule_is_due_the_next_midnight_and_overdue_half_a_day_later() -> None:
    assert rotation_due("0 0 * * *", "UTC", 0.0) == RotationDue(0.0, DAY, 1.5 * DAY)
    # rotated on time the next midnight (a few seconds late): due the midnight after
    assert rotation_due("0 0 * * *", "UTC", DAY + 3) == RotationDue(DAY + 3, 2 * DAY, 2.5 * DAY)
    assert OVERDUE_PERIODS == 0.5


def test_a_monthly_schedule_is_not_overdue_in_the_month_after_a_rotation() -> None:
    # 1970-01-01 00:00 UTC is the first of a month: due February 1st, and overdue half the
    # shortest month (14 days) later
    due = rotation_due("0 0 1 * *", "UTC", 0.0)
    assert due == RotationDue(0.0, 31 * DAY, 45 * DAY)
    for now in (1.5 * DAY, 10 * DAY, 30 * DAY, 31 * DAY, 44 * DAY, 45 * DAY):
        assert not due.overdue(now), now
    assert due.overdue(45 * DAY + 1)


def test_the_schedule_is_read_in_its_timezone() -> None:
    # midnight in Berlin is 23:00 UTC in January 1970 (CET, UTC+1)
    due = rotation_due("0 0 * * *", "Europe/Berlin", 0.0)
    assert due is not None and due.due_at == 23 * 3600.0


def test_an_invalid_schedule_raises() -> None:
    from keysyncd.errors import KeysyncError

    with pytest.raises(KeysyncError):
        rotation_due("0 0 * *", "UTC", 0.0)


def _pair(node: str, serial: int, created_at: float) -> Pair:
    return Pair(node, serial, f"{node}-{serial}.pem", "a" * 64, "b" * 64, created_at)


def test_rotated_since_takes_the_last_rotation_of_any_kind() -> None:
    assert rotated_since(RepositoryState("r", last_rotation_at=5.0)) == 5.0
    # kind jws records its rotations as successful rotate actions
    state = RepositoryState("r", last_success={"rotate": 7.0, "verify": 9.0})
    assert rotated_since(state) == 7.0
    both = RepositoryState("r", last_rotation_at=5.0, last_success={"rotate": 3.0})
    assert rotated_since(both) == 5.0


def test_a_repository_never_rotated_counts_from_when_its_keys_took_over() -> None:
    fernet = RepositoryState(
        "r",
        digests={0: "a" * 64, 1: "b" * 64},
        history={0: KeyHistory(created_at=4.0), 1: KeyHistory(created_at=2.0, promoted_at=4.0)},
    )
    assert rotated_since(fernet) == 4.0
    pairs = JwsState(signing={"n1": _pair("n1", 1, 8.0), "n2": _pair("n2", 1, 6.0)})
    assert rotated_since(RepositoryState("r", jws=pairs)) == 6.0
    assert rotated_since(RepositoryState("r")) is None  # no keys: nothing is due


def test_the_collector_exports_the_due_rotation_of_every_kind(tmp_path: Path) -> None:
    config = parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "repositories": [
                {"name": "fernet-tokens", "path": str(tmp_path / "f"), "schedule": "0 0 * * *"},
                {"name": "credential-keys", "kind": "credential", "path": str(tmp_path / "c"),
                 "schedule": "0 0 * * mon"},
                {"name": "jws-keys", "kind": "jws", "path": str(tmp_path / "j"),
                 "schedule": "0 0 1 * *"},
                {"name": "new-keys", "path": str(tmp_path / "n")},
            ],
            "ssh": {"user": "keystone", "known_hosts": str(tmp_path / "known_hosts")},
        },
        tmp_path / "config.yaml",
    )  # fmt: skip
    save_state(config.state_dir, RepositoryState("fernet-tokens", last_rotation_at=DAY))
    # 1970-01-05 was a Monday: rotated then, due the Monday after, overdue 3.5 days later
    save_state(config.state_dir, RepositoryState("credential-keys", last_rotation_at=4 * DAY))
    pairs = JwsState(signing={"n1": _pair("n1", 1, 0.0)})
    save_state(config.state_dir, RepositoryState("jws-keys", jws=pairs))
    now = 10 * DAY
    samples = {
        (sample.name, sample.labels["repository"]): sample.value
        for family in StateCollector(lambda: config, clock=lambda: now).collect()
        for sample in family.samples
        if family.name.startswith(("keysyncd_next_rotation", "keysyncd_rotation_overdue"))
    }
    assert samples == {
        ("keysyncd_next_rotation_timestamp_seconds", "fernet-tokens"): 2 * DAY,
        ("keysyncd_rotation_overdue_timestamp_seconds", "fernet-tokens"): 2.5 * DAY,
        ("keysyncd_rotation_overdue", "fernet-tokens"): 1,
        ("keysyncd_next_rotation_timestamp_seconds", "credential-keys"): 11 * DAY,
        ("keysyncd_rotation_overdue_timestamp_seconds", "credential-keys"): 14.5 * DAY,
        ("keysyncd_rotation_overdue", "credential-keys"): 0,
        ("keysyncd_next_rotation_timestamp_seconds", "jws-keys"): 31 * DAY,
        ("keysyncd_rotation_overdue_timestamp_seconds", "jws-keys"): 45 * DAY,
        ("keysyncd_rotation_overdue", "jws-keys"): 0,
    }, "new-keys holds no keys yet: nothing is due, so no series"
