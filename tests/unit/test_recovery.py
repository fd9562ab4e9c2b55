"""Crash recovery of a local rotation (core/journal.py), decided from journal and disk.

The rotation journalled: from {0: OLD0, 1: K1, 2: K2}, promote 0 to 3 and write a new 0,
retiring 1. Each case is what a crash at some step leaves on disk.
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

from keysyncd.core.journal import (
    PendingRotation,
    Recovery,
    RepositoryState,
    plan_recovery,
    recovered,
)
from keysyncd.core.policy import KeyHistory

OLD0, NEW0, K1, K2 = "old-staged", "new-staged", "key-1", "key-2"
PENDING = PendingRotation(3, OLD0, NEW0, (1,), started_at=500.0)
HISTORY = {
    0: KeyHistory(created_at=400.0),
    1: KeyHistory(demoted_at=100.0, confirmed_at=100.0),
    2: KeyHistory(created_at=100.0, promoted_at=300.0),
}
BEFORE = {0: OLD0, 1: K1, 2: K2}
STATE = RepositoryState(
    "r", generation=7, digests=BEFORE, history=HISTORY, pending=PENDING, last_rotation_at=300.0
)


@pytest.mark.parametrize(
    ("disk", "expected"),
    [
        (BEFORE, Recovery("none")),  # killed before the new primary was written
        ({**BEFORE, 3: OLD0}, Recovery("rollback", unlink=3)),  # 3 written, 0 not yet new
        ({**BEFORE, 0: NEW0, 3: OLD0}, Recovery("finish", retire=(1,))),  # 0 renamed too
        ({0: NEW0, 2: K2, 3: OLD0}, Recovery("finish", retire=(1,))),  # mid-retirement
        ({**BEFORE, 3: "other"}, Recovery("none")),  # someone else wrote a key 3
        ({**BEFORE, 0: "other", 3: OLD0}, Recovery("none")),  # ... or replaced 0 since
    ],
)
def test_the_disk_says_how_far_the_rotation_got(disk: dict[int, str], expected: Recovery) -> None:
    assert plan_recovery(PENDING, disk) == expected


def test_no_journalled_rotation_means_nothing_to_recover() -> None:
    assert plan_recovery(None, {**BEFORE, 3: OLD0}) == Recovery("none")


def test_each_recovery_says_what_it_does() -> None:
    assert Recovery("none").describe() == "nothing to recover"
    assert Recovery("finish", retire=(1, 2)).describe() == (
        "finish the interrupted rotation: retire keys [1, 2]"
    )
    assert Recovery("rollback", unlink=3).describe() == (
        "roll back the interrupted rotation: remove key 3"
    )


def test_a_finished_rotation_is_recorded_as_if_it_had_not_been_interrupted() -> None:
    disk = {0: NEW0, 2: K2, 3: OLD0}
    state = recovered(STATE, Recovery("finish", retire=(1,)), disk)
    assert state.pending is None
    assert state.generation == 8
    assert dict(state.digests) == disk
    assert state.last_rotation_at == 500.0  # the rotation's own time, not the recovery's
    assert dict(state.history) == {
        0: KeyHistory(created_at=500.0),
        2: KeyHistory(created_at=100.0, promoted_at=300.0, demoted_at=500.0),
        3: KeyHistory(created_at=400.0, promoted_at=500.0),
    }
    assert isinstance(state.digests, MappingProxyType)


@pytest.mark.parametrize("action", ["rollback", "none"])
def test_a_rolled_back_or_foreign_state_only_drops_the_journalled_rotation(action: str) -> None:
    state = recovered(STATE, Recovery(action, unlink=3 if action == "rollback" else None), BEFORE)
    assert state == RepositoryState(
        "r", generation=7, digests=BEFORE, history=HISTORY, pending=None, last_rotation_at=300.0
    )


def test_finish_without_a_journalled_rotation_changes_nothing_but_the_journal() -> None:
    idle = RepositoryState("r", generation=7, digests=BEFORE, history=HISTORY)
    assert recovered(idle, Recovery("finish", retire=(1,)), BEFORE) == idle
