"""Crash recovery of a local rotation, decided from the journal and the disk. Pure.

A rotation journals its plan (``PendingRotation``) before it touches the disk; after a
crash, what the disk holds tells how far it got, so it is finished or rolled back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from keysyncd.core.journal import PendingRotation, RepositoryState, abandon_rotation, advance
from keysyncd.core.policy import rotated_history


@dataclass(frozen=True)
class Recovery:
    """What to do about a rotation a crash interrupted: finish it, roll it back, or nothing."""

    action: str  # "none", "finish" or "rollback"
    retire: tuple[int, ...] = ()  # finish: the keys the rotation was to retire
    unlink: int | None = None  # rollback: the new primary to remove again

    def describe(self) -> str:
        """Return one line saying what recovery does (or would do)."""
        if self.action == "finish":
            return f"finish the interrupted rotation: retire keys {list(self.retire)}"
        if self.action == "rollback":
            return f"roll back the interrupted rotation: remove key {self.unlink}"
        return "nothing to recover"


def plan_recovery(pending: PendingRotation | None, digests: Mapping[int, str]) -> Recovery:
    """Return how to complete an interrupted rotation, judged from the disk: new primary absent,
    nothing happened; present with the old staged key in 0, roll back; with the new one, finish.
    Anything else: someone changed the repository since (keystone-manage fernet_rotate), so
    nothing is deleted (it could be the key keystone uses) and the change is reconciled."""
    if pending is None:
        return Recovery("none")
    primary_done = digests.get(pending.new_primary) == pending.old_staged_digest
    if primary_done and digests.get(0) == pending.new_staged_digest:
        return Recovery("finish", retire=pending.retire)
    if primary_done and digests.get(0) == pending.old_staged_digest:
        return Recovery("rollback", unlink=pending.new_primary)
    return Recovery("none")


def recovered(
    state: RepositoryState, recovery: Recovery, digests: Mapping[int, str]
) -> RepositoryState:
    """Return the state after ``recovery`` ran, the disk now holding ``digests``."""
    pending = state.pending
    if recovery.action != "finish" or pending is None:
        return abandon_rotation(state)
    history = rotated_history(
        state.history, pending.new_primary - 1, pending.new_primary, pending.started_at
    )
    return replace(advance(state, digests, history), last_rotation_at=pending.started_at)
