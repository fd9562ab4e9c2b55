"""The state journal as a value, and every pure transition of it. No IO; time is passed in.
One ``RepositoryState`` per repository (digests, never key material): ``io.local.state``
loads and saves it, actions change it only here. A rotation journals its plan
(``PendingRotation``) before touching the disk, so a crash is finished or rolled back.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

# the journal's parts, re-exported: callers import them with the journal
from keysyncd.core.journalparts import DURATION_BUCKETS as DURATION_BUCKETS
from keysyncd.core.journalparts import ClockRecord as ClockRecord
from keysyncd.core.journalparts import Durations as Durations
from keysyncd.core.journalparts import HookBlock as HookBlock
from keysyncd.core.journalparts import LastAction as LastAction
from keysyncd.core.journalparts import NodeRecord as NodeRecord
from keysyncd.core.journalparts import PendingRotation as PendingRotation
from keysyncd.core.policy import (
    KeptKey,
    KeyHistory,
    Policy,
    RetirementPlan,
    RotationPlan,
    migrated_past,
    plan_retirement,
    rotated_history,
)
from keysyncd.core.vocabulary import GOOD, Outcome

if TYPE_CHECKING:  # loaded with a state that holds them (io.local.statefields)
    from keysyncd.core.jws import JwsState
    from keysyncd.core.revocation import Revocation, RevokedKey


def frozen(mapping: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class RepositoryState:
    """Everything keysyncd remembers about one repository."""

    name: str
    generation: int = 0
    digests: Mapping[int, str] = field(default_factory=frozen)
    history: Mapping[int, KeyHistory] = field(default_factory=frozen)
    pending: PendingRotation | None = None
    last_rotation_at: float | None = None
    last_action: LastAction | None = None
    hook_block: HookBlock | None = None
    nodes: Mapping[str, NodeRecord] = field(default_factory=frozen)
    last_success: Mapping[str, float] = field(default_factory=frozen)  # action -> when
    counters: Mapping[str, int] = field(default_factory=frozen)  # drift:missing, deferred
    durations: Mapping[str, Durations] = field(default_factory=frozen)  # action -> histogram
    local_problems: tuple[str, ...] = ()  # why the local repository is invalid, if it is
    jws: JwsState | None = None  # kind jws: the key pairs of every node (keysyncd.core.jws)
    # the latest controller time keysyncd trusted (keysyncd.core.clock): a clock behind it
    # stepped back. None: not recorded yet (times elsewhere in the journal stand in for it)
    latest_time: float | None = None
    clock: ClockRecord | None = None  # the last judgement of the controller's clock
    # reports that could not be written to report_dir (JSON documents, oldest first): each
    # is written, marked late, by the first later commit that can (keysyncd.actions.context)
    unwritten_reports: tuple[Mapping[str, Any], ...] = ()
    revoked: tuple[RevokedKey, ...] = ()  # every key ever revoked: never pushed again
    revocation: Revocation | None = None  # a revocation under way (blocks rotation)


# --- the key set --------------------------------------------------------------------------


def advance(
    state: RepositoryState, digests: Mapping[int, str], history: Mapping[int, KeyHistory]
) -> RepositoryState:
    """Return ``state`` at the next generation, holding ``digests`` (history of those only)."""
    return replace(
        state,
        generation=state.generation + 1,
        digests=frozen(digests),
        history=frozen({i: entry for i, entry in history.items() if i in digests}),
        pending=None,
    )


def reconcile(
    state: RepositoryState, digests: Mapping[int, str], now: float
) -> tuple[RepositoryState, bool]:
    """Return the state matching the keys on disk and whether it had to change (a change keysyncd
    did not make); keys without history count as created, promoted or demoted ``now`` (the
    conservative choice: a key's retirement is timed from its demotion)."""
    if dict(digests) == dict(state.digests):
        return state, False
    primary = max((index for index in digests if index > 0), default=None)
    history: dict[int, KeyHistory] = {}
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
    return advance(state, digests, history), True


def initialised(state: RepositoryState, digests: Mapping[int, str], now: float) -> RepositoryState:
    """Return the first generation of a new repository {0, 1} (keystone's fernet_setup)."""
    history = {1: KeyHistory(created_at=now, promoted_at=now), 0: KeyHistory(created_at=now)}
    return replace(advance(state, digests, history), last_rotation_at=now)


def begin_rotation(state: RepositoryState, pending: PendingRotation) -> RepositoryState:
    """Return ``state`` with the write-ahead record of a rotation about to touch the disk."""
    return replace(state, pending=pending)


def abandon_rotation(state: RepositoryState) -> RepositoryState:
    """Return ``state`` without its in-flight rotation (it left the disk unchanged)."""
    return replace(state, pending=None)


def rotated(
    state: RepositoryState, plan: RotationPlan, digests: Mapping[int, str], now: float
) -> RepositoryState:
    """Return the state after ``plan`` was carried out at ``now``, leaving ``digests``."""
    history = rotated_history(state.history, plan.demoted, plan.new_primary, now)
    return replace(advance(state, digests, history), last_rotation_at=now)


def retired(state: RepositoryState, digests: Mapping[int, str]) -> RepositoryState:
    """Return the state after keys were retired, leaving ``digests``."""
    return advance(state, digests, state.history)


# --- hooks, local validity, counters and the action's outcome --------------------------------


def block_rotation(state: RepositoryState, block: HookBlock) -> RepositoryState:
    """Return ``state`` with rotation blocked by a failed after_rotate hook."""
    return replace(state, hook_block=block)


NOT_RUN = "has not run yet: it runs once every node verified the rotation that needs it"


def migration_pending(
    state: RepositoryState, after_rotate: tuple[tuple[str, ...], ...], now: float
) -> RepositoryState:
    """Return ``state`` blocked until the after_rotate hooks of a rotation about to happen succeed
    (unchanged without hooks): journaled with the rotation, so that a hook skipped (a node
    failed after the gate, ``--force``) or never reached (keysyncd killed) still blocks."""
    if not after_rotate:
        return state
    return block_rotation(state, HookBlock(after_rotate[0], None, now, NOT_RUN))


def unblock_rotation(state: RepositoryState) -> RepositoryState:
    """Return ``state`` with the hook block cleared (the hook succeeded)."""
    return replace(state, hook_block=None)


def primary_index(state: RepositoryState) -> int | None:
    """Return the index of the current primary (None: the repository has none)."""
    return max((index for index in state.digests if index > 0), default=None)


def every_node_holds(state: RepositoryState, node_names: Collection[str]) -> bool:
    """Return True if every configured node (none: True) was last verified holding the current
    generation."""
    for name in node_names:
        record = state.nodes.get(name)
        if record is None or record.status not in GOOD or record.generation != state.generation:
            return False
    return True


def migrated(state: RepositoryState, index: int, now: float) -> RepositoryState:
    """Return ``state`` recording that a migration to key ``index`` as primary succeeded at ``now``
    (the pending migration cleared when ``index`` is the current primary)."""
    history = dict(state.history)
    history[index] = replace(history.get(index, KeyHistory()), migrated_at=now)
    state = replace(state, history=frozen(history))
    return unblock_rotation(state) if index == primary_index(state) else state


def unmigrated_losses(
    state: RepositoryState, digests: Mapping[int, str], policy: Policy
) -> tuple[int, ...]:
    """Return the journal's keys above 0 that ``digests`` (the disk) lacks or holds otherwise
    with no migration past them (credentials may need them); empty unless retired by migration."""
    if policy.retire_by != "migration":
        return ()
    lost = [i for i, digest in state.digests.items() if i > 0 and digests.get(i) != digest]
    return tuple(sorted(i for i in lost if not migrated_past(i, state.history)))


PENDING_MIGRATION = "an after_rotate migration is pending: no key is retired until it succeeds"


def due_retirement(
    state: RepositoryState, indices: Collection[int], policy: Policy, now: float
) -> RetirementPlan:
    """Return which keys beyond max_active_keys may be retired now: none while an after_rotate
    migration is pending (credentials may still need every key), else ``plan_retirement``."""
    plan = plan_retirement(indices, state.history, policy, now)
    if state.hook_block is None or not plan.retire:
        return plan
    kept = tuple(KeptKey(index, None, PENDING_MIGRATION) for index in plan.retire)
    return RetirementPlan((), tuple(sorted((*plan.keep, *kept), key=lambda k: k.index)))


def counted(state: RepositoryState, *names: str) -> RepositoryState:
    """Return ``state`` with each counter in ``names`` increased by one."""
    counters = dict(state.counters)
    for name in names:
        counters[name] = counters.get(name, 0) + 1
    return replace(state, counters=frozen(counters))


def local_validity(
    state: RepositoryState, problems: Collection[str]
) -> tuple[RepositoryState, bool]:
    """Return ``state`` recording the local repository's problems, and whether they are new (a
    newly invalid repository is one drift event, not one per check)."""
    current = tuple(problems)
    new = bool(current) and current != state.local_problems
    return replace(state, local_problems=current), new


def finished(
    state: RepositoryState, action: str, outcome: str, started: float, ended: float, report_id: str
) -> RepositoryState:
    """Return ``state`` recording an action's end: last action, last success, the deferral
    counter and the duration histogram."""
    successes = dict(state.last_success)
    if outcome == Outcome.OK:
        successes[action] = ended
    durations = dict(state.durations)
    durations[action] = durations.get(action, Durations()).add(max(ended - started, 0.0))
    last = LastAction(action, outcome, ended, report_id)
    state = replace(
        state, last_action=last, last_success=frozen(successes), durations=frozen(durations)
    )
    return counted(state, "deferred") if outcome == Outcome.DEFERRED else state


# --- crash recovery of a local rotation -----------------------------------------------------


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
