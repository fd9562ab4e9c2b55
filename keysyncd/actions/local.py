"""Local repository actions: open, recover, reconcile, init, rotate. Callers hold the lock."""

from __future__ import annotations

import grp
import logging
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, replace

from keysyncd.config import RepositoryConfig
from keysyncd.core.keyring import KeySet, digest_of
from keysyncd.core.kinds import KINDS
from keysyncd.core.policy import (
    KeyHistory,
    Policy,
    RotationPlan,
    plan_retirement,
    plan_rotation,
    rotated_history,
)
from keysyncd.errors import ConfigError, KeysyncError, RepositoryError
from keysyncd.io.repository import Repository
from keysyncd.io.state import PendingRotation, RepositoryState

log = logging.getLogger(__name__)


def resolve_id(value: int | str | None, lookup: str) -> int | None:
    """Return a numeric uid/gid for ``value`` (a number or a name); raise ConfigError if unknown."""
    if value is None or isinstance(value, int):
        return value
    try:
        if lookup == "user":
            return pwd.getpwnam(value).pw_uid
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise ConfigError([f"unknown {lookup} {value!r} on this controller"]) from None


def open_repository(config: RepositoryConfig) -> Repository:
    """Return the Repository for ``config``; ownership is applied only when running as root."""
    as_root = os.geteuid() == 0
    owner = resolve_id(config.owner, "user") if as_root else None
    group = resolve_id(config.group, "group") if as_root else None
    return Repository(config.path, KINDS[config.kind], owner, group)


def policy_of(config: RepositoryConfig) -> Policy:
    """Return the rotation Policy of a repository's config."""
    return Policy(config.max_active_keys, config.token_expiration, config.allow_expired_window)


def recover(repository: Repository, state: RepositoryState) -> RepositoryState:
    """Finish or roll back a rotation interrupted by a crash; return the resulting state.

    The disk tells how far it got: new primary absent → nothing happened; present with
    the old staged key still in 0 → roll back; 0 already replaced → roll forward.
    """
    repository.remove_temp_files()
    pending = state.pending
    if pending is None:
        return state
    digests = repository.scan().keyset.digests()
    primary_done = digests.get(pending.new_primary) == pending.old_staged_digest
    if primary_done and digests.get(0) == pending.new_staged_digest:
        log.warning("finishing a rotation interrupted at %s", pending.new_primary)
        repository.retire(pending.retire)
        history = rotated_history(
            state.history, pending.new_primary - 1, pending.new_primary, pending.started_at
        )
        for index in pending.retire:
            history.pop(index, None)
        after = repository.load().digests()
        return replace(
            state.with_generation(after, _known(history, after)),
            last_rotation_at=pending.started_at,
        )
    if primary_done:
        log.warning("rolling back a rotation interrupted before key 0 was replaced")
        (repository.path / str(pending.new_primary)).unlink()
    return replace(state, pending=None)


def _known(history: dict[int, KeyHistory], digests: dict[int, str]) -> dict[int, KeyHistory]:
    return {index: entry for index, entry in history.items() if index in digests}


def reconcile(keyset: KeySet, state: RepositoryState, now: float) -> tuple[RepositoryState, bool]:
    """Return the state matching ``keyset`` and whether it had to change (a foreign change).

    Keys keysyncd has no history for count as created, promoted or demoted ``now``:
    the conservative choice, because a key's retirement is timed from its demotion.
    """
    digests = keyset.digests()
    if digests == state.digests:
        return state, False
    history = {}
    primary = keyset.primary_index
    for index, digest in digests.items():
        known = state.history.get(index)
        if known is not None and state.digests.get(index) == digest:
            history[index] = known
        elif index == 0:
            history[index] = KeyHistory(created_at=now)
        elif index == primary:
            history[index] = KeyHistory(created_at=now, promoted_at=now)
        else:
            history[index] = KeyHistory(created_at=now, promoted_at=now, demoted_at=now)
    return state.with_generation(digests, history), True


def prepare(
    repository: Repository, state: RepositoryState, now: float
) -> tuple[KeySet, RepositoryState, bool]:
    """Recover, load and reconcile; return (keyset, state, foreign_change).

    Raise RepositoryError if the repository is invalid (nothing is changed then).
    """
    state = recover(repository, state)
    keyset = repository.load()
    lax = repository.permission_problems()
    if lax:
        raise RepositoryError("invalid repository: " + "; ".join(lax))
    state, foreign = reconcile(keyset, state, now)
    return keyset, state, foreign


@dataclass(frozen=True)
class LocalRotation:
    """The result of a local rotation: the plan, the new state and the new key set."""

    plan: RotationPlan
    state: RepositoryState
    keyset: KeySet


def rotate_local(
    repository: Repository,
    keyset: KeySet,
    state: RepositoryState,
    policy: Policy,
    now: float,
    save: Callable[[RepositoryState], None],
) -> LocalRotation:
    """Rotate the local repository once, journaled so a crash can be finished or undone.

    ``save`` is called with each state to persist (the journal write). Raise
    RepositoryError if the disk write fails; the repository is then unchanged.
    """
    plan = plan_rotation(keyset.indices, state.history, policy, now)
    new_staged = repository.kind.generate()
    pending = PendingRotation(
        new_primary=plan.new_primary,
        old_staged_digest=keyset.digests()[0],
        new_staged_digest=digest_of(new_staged),
        retire=plan.retire,
        started_at=now,
    )
    save(replace(state, pending=pending))
    try:
        repository.rotate(keyset, plan, new_staged)
    except RepositoryError:
        save(replace(state, pending=None))
        raise
    repository.retire(plan.retire)
    after = repository.load()
    history = rotated_history(state.history, plan.demoted, plan.new_primary, now)
    new_state = replace(
        state.with_generation(after.digests(), _known(history, after.digests())),
        last_rotation_at=now,
    )
    save(new_state)
    return LocalRotation(plan, new_state, after)


def retire_due(
    repository: Repository, keyset: KeySet, state: RepositoryState, policy: Policy, now: float
) -> tuple[KeySet, RepositoryState, tuple[int, ...]]:
    """Retire keys kept earlier that are now safe to delete; return the new set and state."""
    due = plan_retirement(keyset.indices, state.history, policy, now).retire
    if not due:
        return keyset, state, ()
    repository.retire(due)
    after = repository.load()
    return (
        after,
        state.with_generation(after.digests(), _known(state.history, after.digests())),
        due,
    )


def init_local(repository: Repository, state: RepositoryState, now: float) -> RepositoryState:
    """Create {0, 1} like keystone's fernet_setup; return the first generation's state.

    Raise KeysyncError if the repository already holds keys (never re-bootstrap).
    """
    if repository.holds_keys():
        raise KeysyncError(
            f"refusing to initialise {repository.path}: it already holds keys "
            "(re-bootstrapping a live repository invalidates every token)"
        )
    first, second = repository.kind.generate(), repository.kind.generate()
    repository.create(first, second)
    keyset = repository.load()
    history = {
        1: KeyHistory(created_at=now, promoted_at=now),
        0: KeyHistory(created_at=now),
    }
    return replace(state.with_generation(keyset.digests(), history), last_rotation_at=now)
