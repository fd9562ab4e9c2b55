"""The state journal as a value, and every pure transition of it. No IO; time is passed in.

One ``RepositoryState`` per repository records the generation (a number that only grows),
the digests of that generation, each key's history, an in-flight rotation (for crash
recovery), per-node status, the last action, counters and action durations. It never holds
key material, only digests. ``keysyncd.io.state`` loads and saves it; actions change it only
through the functions here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from keysyncd.core.policy import KeyHistory, RotationPlan, confirm_demotions, rotated_history
from keysyncd.core.report import NodeOutcome
from keysyncd.core.vocabulary import GOOD, RETRIED_WITH_BACKOFF, Outcome

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BACKOFF_CAP = 3600.0


def _frozen(mapping: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class PendingRotation:
    """A rotation that was started: enough to finish or roll it back after a crash."""

    new_primary: int
    old_staged_digest: str
    new_staged_digest: str
    retire: tuple[int, ...]
    started_at: float


@dataclass(frozen=True)
class NodeRecord:
    """What keysyncd last knew about one node of one repository."""

    status: str | None = None
    reason: str | None = None
    error: str | None = None
    checked_at: float | None = None
    last_verified_at: float | None = None
    generation: int | None = None  # the controller generation it was verified holding
    failures: int = 0  # failed attempts in a row that back off (unreachable, timeout)
    next_attempt_at: float | None = None


@dataclass(frozen=True)
class LastAction:
    """The last action's summary, as ``status`` shows it."""

    action: str
    outcome: str
    at: float
    report: str


@dataclass(frozen=True)
class HookBlock:
    """A failed after_rotate hook that blocks the next rotation until it succeeds."""

    hook: tuple[str, ...]
    status: int | None
    at: float


@dataclass(frozen=True)
class Durations:
    """A cumulative histogram of one action's durations (Prometheus buckets)."""

    buckets: tuple[int, ...] = (0,) * len(DURATION_BUCKETS)
    count: int = 0
    total: float = 0.0

    def add(self, seconds: float) -> Durations:
        """Return the histogram with one more observation."""
        counts = tuple(
            count + (seconds <= bound)
            for count, bound in zip(self.buckets, DURATION_BUCKETS, strict=True)
        )
        return Durations(counts, self.count + 1, self.total + max(seconds, 0.0))


@dataclass(frozen=True)
class RepositoryState:
    """Everything keysyncd remembers about one repository."""

    name: str
    generation: int = 0
    digests: Mapping[int, str] = field(default_factory=_frozen)
    history: Mapping[int, KeyHistory] = field(default_factory=_frozen)
    pending: PendingRotation | None = None
    last_rotation_at: float | None = None
    last_action: LastAction | None = None
    hook_block: HookBlock | None = None
    nodes: Mapping[str, NodeRecord] = field(default_factory=_frozen)
    last_success: Mapping[str, float] = field(default_factory=_frozen)  # action -> when
    counters: Mapping[str, int] = field(default_factory=_frozen)  # drift:missing, deferred
    durations: Mapping[str, Durations] = field(default_factory=_frozen)  # action -> histogram
    local_problems: tuple[str, ...] = ()  # why the local repository is invalid, if it is


# --- the key set --------------------------------------------------------------------------


def advance(
    state: RepositoryState, digests: Mapping[int, str], history: Mapping[int, KeyHistory]
) -> RepositoryState:
    """Return ``state`` at the next generation, holding ``digests`` (history of those only)."""
    return replace(
        state,
        generation=state.generation + 1,
        digests=_frozen(digests),
        history=_frozen({i: entry for i, entry in history.items() if i in digests}),
        pending=None,
    )


def reconcile(
    state: RepositoryState, digests: Mapping[int, str], now: float
) -> tuple[RepositoryState, bool]:
    """Return the state matching the keys on disk and whether it had to change (a change
    keysyncd did not make).

    Keys keysyncd has no history for count as created, promoted or demoted ``now``: the
    conservative choice, because a key's retirement is timed from its demotion.
    """
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
    """Return how to complete an interrupted rotation, judged from what is on disk.

    New primary absent: nothing happened. Present, with the old staged key still in 0:
    roll back. 0 already replaced: roll forward.
    """
    if pending is None:
        return Recovery("none")
    primary_done = digests.get(pending.new_primary) == pending.old_staged_digest
    if primary_done and digests.get(0) == pending.new_staged_digest:
        return Recovery("finish", retire=pending.retire)
    if primary_done:
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


# --- nodes ----------------------------------------------------------------------------------


def record_nodes(
    state: RepositoryState, checks: Mapping[str, NodeOutcome], now: float
) -> RepositoryState:
    """Return ``state`` with each checked node's status; a good one is verified at the
    current generation, and backoff is cleared for every node that answered."""
    nodes = dict(state.nodes)
    for name, check in checks.items():
        before = nodes.get(name, NodeRecord())
        record = replace(
            before, status=check.status, reason=check.reason, error=check.error, checked_at=now
        )
        if check.status in GOOD:
            record = replace(record, last_verified_at=now, generation=state.generation)
        if check.reason not in RETRIED_WITH_BACKOFF:
            record = replace(record, failures=0, next_attempt_at=None)
        nodes[name] = record
    return replace(state, nodes=_frozen(nodes))


def confirm_if_all_verified(
    state: RepositoryState, node_names: Collection[str], now: float
) -> RepositoryState:
    """Return ``state`` with demotions confirmed if every node holds the current generation.

    Retirement is timed from that confirmation (see keysyncd.core.policy).
    """
    for name in node_names:
        record = state.nodes.get(name)
        if record is None or record.status not in GOOD or record.generation != state.generation:
            return state
    return replace(state, history=_frozen(confirm_demotions(state.history, now)))


def backoff_delay(failures: int, base: float, jitter: float) -> float:
    """Return seconds to wait before retrying a node after ``failures`` failures in a row.

    ``base * 2**(failures - 1)``, capped at an hour (or 16 bases), scaled by ``jitter``
    in [0.5, 1] so that many nodes that failed together do not retry together.
    """
    cap = min(BACKOFF_CAP, 16 * base)
    return min(cap, base * 2 ** max(failures - 1, 0)) * jitter


def schedule_backoff(
    state: RepositoryState,
    checks: Mapping[str, NodeOutcome],
    now: float,
    base: float,
    jitter: Callable[[], float],
) -> RepositoryState:
    """Return ``state`` with the next attempt of each unreachable or timed-out node pushed
    back exponentially (``jitter()`` returns a factor in [0.5, 1])."""
    nodes = dict(state.nodes)
    for name, check in checks.items():
        if check.reason in RETRIED_WITH_BACKOFF:
            record = nodes.get(name, NodeRecord())
            failures = record.failures + 1
            delay = backoff_delay(failures, base, jitter())
            nodes[name] = replace(record, failures=failures, next_attempt_at=now + delay)
    return replace(state, nodes=_frozen(nodes))


def due_nodes(
    state: RepositoryState, node_names: Collection[str], now: float
) -> tuple[list[str], list[str]]:
    """Return (nodes to check now, nodes still backing off)."""
    due, waiting = [], []
    for name in node_names:
        record = state.nodes.get(name)
        if record is not None and (record.next_attempt_at or 0.0) > now:
            waiting.append(name)
        else:
            due.append(name)
    return due, waiting


# --- hooks, local validity, counters and the action's outcome --------------------------------


def block_rotation(state: RepositoryState, block: HookBlock) -> RepositoryState:
    """Return ``state`` with rotation blocked by a failed after_rotate hook."""
    return replace(state, hook_block=block)


def unblock_rotation(state: RepositoryState) -> RepositoryState:
    """Return ``state`` with the hook block cleared (the hook succeeded)."""
    return replace(state, hook_block=None)


def counted(state: RepositoryState, *names: str) -> RepositoryState:
    """Return ``state`` with each counter in ``names`` increased by one."""
    counters = dict(state.counters)
    for name in names:
        counters[name] = counters.get(name, 0) + 1
    return replace(state, counters=_frozen(counters))


def local_validity(
    state: RepositoryState, problems: Collection[str]
) -> tuple[RepositoryState, bool]:
    """Return ``state`` recording the local repository's problems, and whether they are new
    (a newly invalid repository counts as one drift event, not one per check)."""
    current = tuple(problems)
    new = bool(current) and current != state.local_problems
    return replace(state, local_problems=current), new


def finished(
    state: RepositoryState,
    action: str,
    outcome: str,
    started: float,
    ended: float,
    report_id: str,
) -> RepositoryState:
    """Return ``state`` recording an action's end: last action, last success, the deferral
    counter and the duration histogram."""
    last = LastAction(action, outcome, ended, report_id)
    successes = dict(state.last_success)
    if outcome == Outcome.OK:
        successes[action] = ended
    durations = dict(state.durations)
    durations[action] = durations.get(action, Durations()).add(max(ended - started, 0.0))
    state = replace(
        state,
        last_action=last,
        last_success=_frozen(successes),
        durations=_frozen(durations),
    )
    return counted(state, "deferred") if outcome == Outcome.DEFERRED else state


def nodes_in_sync(state: RepositoryState, node_names: Collection[str]) -> int:
    """Return how many of ``node_names`` were last verified holding the expected keys."""
    return sum(
        1 for name in node_names if (record := state.nodes.get(name)) and record.status in GOOD
    )
