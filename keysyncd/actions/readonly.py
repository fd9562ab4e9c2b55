"""One read-only shell for every kind, ``verify`` and drift: read each node once, diff it,
one report. The kind brings what differs (``Kind``); backoff, drift reports, repair and the
migration retried are the shell's. Callers hold the lock."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any, Protocol

from keysyncd.actions.afterrotate import migrate_when_ready
from keysyncd.actions.context import ActionResult, Draft, Run, check_clock, commit, node_outcomes
from keysyncd.core import journal
from keysyncd.core.changewords import describe_changes
from keysyncd.core.clock import ClockCheck
from keysyncd.core.journal import NodeRecord, RepositoryState
from keysyncd.core.nodes import checked, due_nodes, schedule_backoff
from keysyncd.core.report import NodeOutcome
from keysyncd.core.times import rfc3339
from keysyncd.core.vocabulary import GOOD, Action, NodeStatus, Outcome
from keysyncd.errors import RepositoryError
from keysyncd.io.local.state import load_state

log = logging.getLogger(__name__)
Only = str | Collection[str] | None  # every node, one, or several
# (each node's outcome, what drifted where, the judgement of the clock)
Checks = tuple[dict[str, NodeOutcome], dict[str, dict[str, Any]], ClockCheck]
Loaded = tuple[RepositoryState, Any, Any]  # the journal, the keys, what nodes must hold
Rng = random.Random | None  # for the jitter of the backoff
Later = Callable[[], ActionResult]  # a repair run once the connections are closed


class Kind(Protocol):
    """A kind's part of the shell: ``found`` (journal, local problems, keys), ``changed``
    (valid keys; raise RepositoryError if lost), ``load``, ``connect`` (None without
    nodes), ``repair`` now on the open fleet, or return what repairs once it is closed."""

    words: tuple[str, str]  # what its keys are called, what an invalid state spares the nodes

    def found(self, run: Run) -> tuple[RepositoryState, tuple[str, ...], Any]: ...
    def changed(
        self, run: Run, state: RepositoryState, keys: Any, started: float, revalidated: bool
    ) -> ActionResult | None: ...
    def load(self, run: Run) -> Loaded: ...
    def connect(self, run: Run, only: Only) -> AbstractContextManager[Any]: ...
    def repair(self, run: Run, fleet: Any, keys: Any) -> Later | None: ...


def check_local(run: Run, *, kind: Kind) -> ActionResult | None:
    """Validate the local keys; return a result if anything happened (invalid: never pushed)."""
    started = run.clock()
    state, problems, keys = kind.found(run)
    if problems:
        return _invalid(run, kind, state, problems, started)
    revalidated = bool(state.local_problems)
    if revalidated:
        log.info("%s: the %s is valid again", run.repository.name, kind.words[0])
        state, _ = journal.local_validity(state, ())
    try:
        return kind.changed(run, state, keys, started, revalidated)
    except RepositoryError as lost:  # a key credentials may need is gone: push nothing
        lost_keys = (str(lost).removeprefix("invalid repository: "),)
        return _invalid(run, kind, state, lost_keys, started)


def _invalid(
    run: Run, kind: Kind, state: RepositoryState, problems: tuple[str, ...], started: float
) -> ActionResult:
    """Report invalid local keys (every check, until they are fixed); push nothing."""
    for problem in problems:
        log.error("%s: invalid %s, %s: %s", run.repository.name, *kind.words, problem)
    state, new = journal.local_validity(state, problems)
    state = journal.counted(state, "drift:local_invalid") if new else state
    details = {"local": {"valid": False, "problems": list(problems)}}
    draft = Draft(Action.DRIFT, started, outcome=Outcome.FAILED, messages=problems, details=details)
    return commit(run, state, draft)


def verify(run: Run, node: str | None = None, *, kind: Kind) -> ActionResult:
    """Read every node (or one), changing nothing; return the result (RepositoryError: invalid)."""
    started = run.clock()
    loaded = kind.load(run)
    (nodes, _, clock), _ = read(run, kind, loaded, node)
    state = checked(loaded[0], nodes, run.node_names, run.clock(), clock)
    return commit(run, state, Draft(Action.VERIFY, started, nodes, clock=clock))


def read(
    run: Run, kind: Kind, loaded: Loaded, only: Only, mend: bool = False
) -> tuple[Checks, Later | None]:
    """Read ``only`` (or every node) once; return the checks and the repair left to do."""
    state, keys, expected = loaded
    drifted: dict[str, dict[str, Any]] = {}
    later = None
    with kind.connect(run, only) if only is None or only else nullcontext() as fleet:
        clock = check_clock(run, state, fleet)
        if fleet is not None:
            fleet.inspect(expected)
            drifted = {
                name: result.plan.changes()
                for name, result in fleet.results.items()
                if result.status == NodeStatus.DIFFERS and result.plan
            }
            if drifted and mend:
                log.warning("%s: drift on %s: repairing", run.repository.name, ", ".join(drifted))
                later = kind.repair(run, fleet, keys)
        nodes = node_outcomes(fleet)
    for name, changes in drifted.items():
        status = NodeStatus.REPAIRED if nodes[name].status in GOOD else nodes[name].status
        nodes[name] = replace(nodes[name], changes=changes, status=status)
    return (nodes, drifted, clock), later


def check_fleet(run: Run, rng: random.Random | None = None, *, kind: Kind) -> ActionResult | None:
    """Verify the nodes not backing off, repairing if configured (None: no nodes or bad keys)."""
    started = run.clock()
    state = load_state(run.config.state_dir, run.repository.name)
    if not run.config.nodes or state.local_problems:
        return None
    due, waiting = due_nodes(state, run.node_names, started)
    loaded = kind.load(run)
    checks, later = read(run, kind, loaded, due, run.config.drift.on_remote_drift == "repair")
    return later() if later else record_check(run, loaded[0], started, checks, waiting, rng)


def record_check(
    run: Run, state: RepositoryState, started: float, checks: Checks, waiting: list[str], rng: Rng
) -> ActionResult:
    """Commit a periodic check (drift counted, migration retried, backoff); return the result."""
    nodes, drifted, clock = checks
    kinds = [f"drift:{kind}" for changes in drifted.values() for kind, v in changes.items() if v]
    state = checked(journal.counted(state, *kinds), nodes, run.node_names, run.clock(), clock)
    # the daemon's retry of a pending migration: it runs once every node holds its primary
    state, migration, pending = migrate_when_ready(run, state)
    jitter = (rng or random.Random()).uniform  # noqa: S311 - jitter, not crypto
    state = schedule_backoff(
        state, nodes, started, run.config.drift.verify_interval, lambda: jitter(0.5, 1.0)
    )
    nodes |= {name: _backing_off(state.nodes[name]) for name in waiting}
    messages = tuple(f"drift on {n}: {describe_changes(c)}" for n, c in drifted.items())
    if pending is not None and migration:
        messages += (pending,)
    action = Action.DRIFT if drifted else Action.VERIFY
    details: dict[str, Any] = {"backoff": {n: state.nodes[n].next_attempt_at for n in waiting}}
    if migration:
        details["hooks"] = [hook.to_json() for hook in migration]
    draft = Draft(action, started, nodes, messages=messages, details=details, clock=clock)
    return commit(run, state, draft)


def _backing_off(record: NodeRecord) -> NodeOutcome:
    """Return the outcome of a node not tried because it is backing off after failures."""
    return NodeOutcome(
        status=NodeStatus.SKIPPED,
        reason=record.reason,
        error=(
            f"backing off after {record.failures} failed attempts; next attempt at "
            f"{rfc3339(record.next_attempt_at)}"
        ),
    )
