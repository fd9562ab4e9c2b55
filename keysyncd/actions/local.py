"""The controller's own repository: load it with its journal (``load_local`` only reads),
recover, rotate, retire (these write, under the lock)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from keysyncd.actions.context import Run, write_ahead
from keysyncd.actions.inspect import open_repository
from keysyncd.core import journal, revocation
from keysyncd.core.clock import ClockCheck
from keysyncd.core.journal import (
    PendingRotation,
    Recovery,
    RepositoryState,
    plan_recovery,
    recovered,
)
from keysyncd.core.keyring import KeySet, digest_of
from keysyncd.core.policy import RetirementPlan, RotationPlan
from keysyncd.core.text import plural
from keysyncd.errors import KeysyncError, RepositoryError
from keysyncd.io.local.repository import Repository, Scan
from keysyncd.io.local.state import load_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Local:
    """The controller's repository as found: its scan, journal, and what recovery must do."""

    repository: Repository
    scan: Scan
    state: RepositoryState
    recovery: Recovery
    temp_files: tuple[str, ...]
    lax: tuple[str, ...]  # lax permissions (invalid: neither pushed nor rotated)

    def problems(self) -> list[str]:
        """Return why the repository cannot be used as it is (empty when it can)."""
        return [*self.scan.problems, *self.lax]


def load_local(run: Run) -> Local:
    """Return the repository and journal; raise RepositoryError, LocalFileError if unsafe."""
    repository = open_repository(run.repository)
    state = load_state(run.config.state_dir, run.repository.name)
    scan = repository.scan()
    recovery = plan_recovery(state.pending, scan.keyset.digests())
    lax = tuple(repository.permission_problems()) if repository.holds_keys() else ()
    return Local(repository, scan, state, recovery, repository.temp_files(), lax)


@dataclass(frozen=True)
class Recovered:
    """The repository after recovery: its valid keys, its journal, and what is wrong."""

    keyset: KeySet
    state: RepositoryState
    problems: tuple[str, ...]

    def valid(self) -> tuple[KeySet, RepositoryState]:
        """Return (keys, journal); raise RepositoryError naming every problem if invalid."""
        if self.problems:
            raise RepositoryError("invalid repository: " + "; ".join(self.problems))
        return self.keyset, self.state


def recover(run: Run, local: Local, said: list[str] | None = None) -> Recovered:
    """Carry out ``local.recovery``, remove temp files; return what is left. With ``said``
    (a dry run) nothing changes: what would be done is said there."""
    repository, state, recovery = local.repository, local.state, local.recovery
    if said is not None:
        said += [] if recovery.action == "none" else ["would " + recovery.describe()]
        temps = local.temp_files
        said += [f"would remove {plural(len(temps), 'leftover temp file')}"] if temps else []
        gone = set(recovery.retire) | {recovery.unlink} - {None}
        keys = KeySet.of(key for i, key in local.scan.keyset.keys.items() if i not in gone)
        return Recovered(keys, state, tuple(local.problems()))
    repository.remove_temp_files()
    if recovery.action != "none":
        log.warning("%s: %s", run.repository.name, recovery.describe())
        gone_now = recovery.retire or (recovery.unlink,)
        repository.retire(tuple(index for index in gone_now if index is not None))
    scan = repository.scan() if recovery.action != "none" else local.scan
    if state.pending is not None:
        state = recovered(state, recovery, scan.keyset.digests())
        write_ahead(run, state)
    return Recovered(scan.keyset, state, (*scan.problems, *local.lax))


def rotate_local(
    run: Run,
    repository: Repository,
    keyset: KeySet,
    state: RepositoryState,
    plan: RotationPlan,
    clock: ClockCheck,
) -> tuple[KeySet, RepositoryState]:
    """Carry out ``plan``, journaled first; return the new keys and journal. Raise
    RepositoryError if the disk write fails (unchanged), KeysyncError for an untrusted clock."""
    if not clock.trusted:
        raise KeysyncError(f"{run.repository.name}: not rotated: {clock.describe()}")
    now = run.clock()
    new_staged = repository.kind.generate()
    staged = keyset.staged
    if staged is None:
        raise RepositoryError(f"cannot rotate {repository.path}: no staged key 0")
    pending = PendingRotation(
        new_primary=plan.new_primary,
        old_staged_digest=staged.digest,
        new_staged_digest=digest_of(new_staged),
        retire=plan.retire,
        started_at=now,
    )
    # the rotation and its pending migration are one journal write: no kill -9 between them
    blocked = journal.migration_pending(state, run.repository.hooks.after_rotate, now)
    write_ahead(run, journal.begin_rotation(blocked, pending))
    try:
        repository.rotate(keyset, plan, new_staged)
    except RepositoryError:
        write_ahead(run, journal.abandon_rotation(state))
        raise
    repository.retire(plan.retire)
    after = repository.load()
    state = journal.rotated(blocked, plan, after.digests(), now)
    write_ahead(run, state)
    return after, state


def due_now(
    run: Run, keyset: KeySet, state: RepositoryState, clock: ClockCheck
) -> tuple[RetirementPlan, tuple[int, ...]]:
    """Return the retirement due (rule 2) and what to retire (none on a bad clock: rule 10)."""
    due = journal.due_retirement(state, keyset.indices, run.repository.policy(), run.clock())
    return due, (due.retire if clock.trusted else ())


def retire_due(
    run: Run,
    repository: Repository,
    keyset: KeySet,
    state: RepositoryState,
    clock: ClockCheck,
    retire: tuple[int, ...] | None = None,
) -> tuple[KeySet, RepositoryState, tuple[int, ...]]:
    """Retire ``retire`` (None: ``due_now``'s); return the new set, journal, retired indices."""
    if retire is None:
        _, retire = due_now(run, keyset, state, clock)
    if not retire:
        return keyset, state, ()
    repository.retire(retire)
    after = repository.load()
    state = journal.retired(state, after.digests())
    write_ahead(run, state)  # the journal matches the disk again before anything else happens
    return after, state, retire


def as_found(run: Run, local: Local, dry: bool = False) -> tuple[KeySet, RepositoryState]:
    """Return the keys and journal for ``sync --node`` (which never changes the controller);
    raise RepositoryError if invalid, or if an interrupted rotation must be finished first."""
    if local.recovery.action != "none":
        refuses = "sync --node would refuse: it" if dry else "not synced: sync --node"
        raise RepositoryError(
            f"{run.repository.name}: {refuses} never changes the controller's repository, and an "
            f"interrupted rotation must be finished first ({local.recovery.describe()}): "
            "run 'keysyncd sync' without --node"
        )
    state = local.state
    if state.pending is not None:  # a rotation that never reached the disk: journal only
        state = recovered(state, local.recovery, local.scan.keyset.digests())
    return Recovered(local.scan.keyset, state, tuple(local.problems())).valid()


def initialise(run: Run, repository: Repository, state: RepositoryState) -> RepositoryState:
    """Create {0, 1} like keystone's fernet_setup; return the first generation's journal."""
    first, second = repository.kind.generate(), repository.kind.generate()
    repository.create(first, second)
    return journal.initialised(state, repository.load().digests(), run.clock())


def reconciled(
    run: Run, state: RepositoryState, keyset: KeySet, now: float
) -> tuple[RepositoryState, bool]:
    """Return ``journal.reconcile`` of the disk (and whether it changed outside keysyncd);
    raise RepositoryError if a key credentials may need was lost (a push would delete it)."""
    lost = journal.unmigrated_losses(state, keyset.digests(), run.repository.policy())
    # a revocation deleted it on purpose, unless it is the one under way, which deletes an
    # unmigrated credential key only when forced: a key gone by hand meanwhile is a loss
    pending = state.revocation
    waiting = pending.digest if pending is not None and not pending.forced else None
    gone = revocation.revoked_digests(state.revoked) - {waiting}
    lost = tuple(index for index in lost if state.digests[index] not in gone)
    if lost:
        raise RepositoryError(
            f"invalid repository: {run.repository.path}: keys {list(lost)} changed or "
            "disappeared outside keysyncd, and credentials may still be encrypted with them "
            "(no migration past them succeeded): restore them (every node still holds them)"
        )
    return journal.reconcile(state, keyset.digests(), now)


def refuse_revoked(run: Run, state: RepositoryState, keyset: KeySet) -> None:
    """Raise RepositoryError if the controller holds a revoked key (restored from a backup, put
    back by hand): keysyncd never pushes one again (SPEC section 10). The one exception, for
    every action alike, is the key of the revocation under way: it stays until the revocation
    deletes it (a credential key, until its migration), and nodes may need it meanwhile."""
    pending = state.revocation.digest if state.revocation is not None else None
    held = [
        (i, d) for i, d in revocation.held_revoked(keyset.digests(), state.revoked) if d != pending
    ]
    if not held:
        return
    index, digest = held[0]
    name = run.repository.name
    raise RepositoryError(
        f"{name}: key {index} in {run.repository.path} (sha256:{digest[:16]}) was revoked; "
        f"keysyncd never pushes it again: remove it, or run 'keysyncd revoke --repo {name} "
        f"--index {index} --reason TEXT' to replace it everywhere"
    )
