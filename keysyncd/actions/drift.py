"""Drift: changes keysyncd did not make, locally (watch) or on nodes (periodic check).

Local changes are told apart from keysyncd's own writes by comparing the disk with the
journal, never by timing. Nodes that cannot be reached are retried with exponential backoff
and jitter. Callers hold the lock.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from typing import Any

from keysyncd.actions.afterrotate import migrate_when_ready
from keysyncd.actions.context import (
    ActionResult,
    Draft,
    Run,
    check_clock,
    commit,
    node_outcomes,
    remember,
)
from keysyncd.actions.local import load_local, open_repository, reconciled, recover
from keysyncd.core import journal
from keysyncd.core.changewords import describe_changes
from keysyncd.core.clock import ClockCheck
from keysyncd.core.journal import NodeRecord, RepositoryState
from keysyncd.core.keyring import KeySet
from keysyncd.core.nodes import checked, due_nodes, schedule_backoff
from keysyncd.core.report import NodeOutcome
from keysyncd.core.times import rfc3339
from keysyncd.core.vocabulary import GOOD, Action, NodeStatus, Outcome
from keysyncd.errors import RepositoryError
from keysyncd.io.local.state import load_state
from keysyncd.io.remote.fleet import push_keyset

log = logging.getLogger(__name__)
REPLACED = "drift:local_replaced"  # counted: keysyncd_drift_events_total{kind="local_replaced"}


def check_local(run: Run) -> ActionResult | None:
    """Validate the local repository against the journal; return a result if anything
    happened (None: keysyncd's own write, or nothing changed).

    An invalid state is reported (every time, until fixed) and never pushed; a valid
    foreign change becomes a new generation and is pushed or only reported.
    """
    started = run.clock()
    missing = _missing(run)
    if missing is not None:
        return _invalid(run, missing, (f"{run.repository.path}: {MISSING}",), started)
    recovered = recover(run, load_local(run))
    if recovered.problems:
        return _invalid(run, recovered.state, recovered.problems, started)
    state = recovered.state
    if state.local_problems:
        log.info("%s: the local repository is valid again", run.repository.name)
        state, _ = journal.local_validity(state, ())
    try:
        state, foreign = reconciled(run, state, recovered.keyset, started)
    except RepositoryError as lost:  # a key credentials may need is gone: push nothing
        return _invalid(run, state, (str(lost).removeprefix("invalid repository: "),), started)
    if not foreign:
        remember(run, state)
        return None
    state = journal.counted(state, "drift:local_change")
    message = f"local repository changed outside keysyncd: now generation {state.generation}"
    log.warning("%s: %s", run.repository.name, message)
    nodes: dict[str, NodeOutcome] = {}
    action = Action.DRIFT
    clock = None
    if run.config.drift.on_local_change == "sync" and run.config.nodes:
        with run.fleet() as fleet:
            clock = check_clock(run, state, fleet)
            if fleet is not None:
                push_keyset(fleet, recovered.keyset)
            nodes = node_outcomes(fleet)
        state, action = checked(state, nodes, run.node_names, run.clock(), clock), Action.SYNC
    elif run.config.nodes:
        message += " (not pushed: drift.on_local_change is alert)"
    details = {"local": {"valid": True}}
    draft = Draft(action, started, nodes, messages=(message,), details=details, clock=clock)
    return commit(run, state, draft)


MISSING = (
    "the repository directory is missing (moved or deleted); nothing is pushed until it is back"
)


def _missing(run: Run) -> RepositoryState | None:
    """Return the journal if the repository's directory vanished after keysyncd had keys in
    it (None: it is there, or was never initialised, which ``init`` is for)."""
    if run.repository.path.exists():
        return None
    state = load_state(run.config.state_dir, run.repository.name)
    return state if state.digests else None


def report_replaced(run: Run) -> ActionResult:
    """Commit the report that the repository's directory was replaced (moved away and
    recreated, or restored) and is watched again; what it holds is checked next."""
    state = journal.counted(load_state(run.config.state_dir, run.repository.name), REPLACED)
    message = (
        f"repository directory {run.repository.path} was replaced (moved away and recreated, "
        "or restored): the local watch now follows the new directory"
    )
    log.warning("%s: %s", run.repository.name, message)
    details = {"watch": {"available": True, "event": "replaced"}}
    return commit(
        run, state, Draft(Action.DRIFT, run.clock(), messages=(message,), details=details)
    )


def _invalid(
    run: Run, state: RepositoryState, problems: tuple[str, ...], started: float
) -> ActionResult:
    """Report an invalid local repository (every check, until it is fixed); push nothing."""
    for problem in problems:
        log.error("%s: invalid local repository, not pushed: %s", run.repository.name, problem)
    state, new = journal.local_validity(state, problems)
    state = journal.counted(state, "drift:local_invalid") if new else state
    details = {"local": {"valid": False, "problems": list(problems)}}
    draft = Draft(Action.DRIFT, started, outcome=Outcome.FAILED, messages=problems, details=details)
    return commit(run, state, draft)


def report_watch_failure(run: Run, failure: str) -> ActionResult:
    """Commit the report that the local watch of the repository is unavailable."""
    state = load_state(run.config.state_dir, run.repository.name)
    message = f"local watch unavailable ({failure}); the periodic check still covers it"
    return commit(
        run,
        state,
        Draft(
            Action.DRIFT,
            run.clock(),
            outcome=Outcome.FAILED,
            messages=(message,),
            details={"watch": {"available": False, "error": failure}},
        ),
    )


def check_fleet(run: Run, rng: random.Random | None = None) -> ActionResult | None:
    """Verify every node not backing off; repair drift if configured; return the result.

    None when there are no nodes or the local repository is invalid (``check_local``
    reports that).
    """
    started = run.clock()
    state = load_state(run.config.state_dir, run.repository.name)
    if not run.config.nodes or state.local_problems:
        return None
    due, waiting = due_nodes(state, run.node_names, started)
    checks = _check_nodes(run, state, due, open_repository(run.repository).load())
    return record_check(run, state, started, checks, waiting, rng)


Checks = tuple[dict[str, NodeOutcome], dict[str, dict[str, Any]], ClockCheck]


def record_check(
    run: Run,
    state: RepositoryState,
    started: float,
    checks: Checks,
    waiting: list[str],
    rng: random.Random | None = None,
) -> ActionResult:
    """Commit a periodic check of the nodes not backing off, for every kind: ``checks`` is
    (each checked node's outcome, what drifted where, the judgement of the clock); the
    drift is counted, a pending after_rotate migration retried once every node holds the
    current keys, the unreachable nodes retried later with exponential backoff and jitter,
    and the ``waiting`` ones (still backing off) reported skipped. Return the result."""
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
    backoff = {name: state.nodes[name].next_attempt_at for name in waiting}
    action = Action.DRIFT if drifted else Action.VERIFY
    details: dict[str, Any] = {"backoff": backoff}
    if migration:
        details["hooks"] = [hook.to_json() for hook in migration]
    draft = Draft(action, started, nodes, messages=messages, details=details, clock=clock)
    return commit(run, state, draft)


def _check_nodes(
    run: Run, state: RepositoryState, names: list[str], expected: KeySet
) -> tuple[dict[str, NodeOutcome], dict[str, dict[str, Any]], ClockCheck]:
    """Read ``names`` and repair drift if configured; return (outcomes, what drifted where,
    the judgement of the clock)."""
    drifted: dict[str, dict[str, Any]] = {}
    with run.fleet(names) as fleet:
        clock = check_clock(run, state, fleet)
        if fleet is not None:
            fleet.inspect(expected.digests())
            drifted = {
                name: result.plan.changes()
                for name, result in fleet.results.items()
                if result.status == NodeStatus.DIFFERS and result.plan
            }
            if drifted and run.config.drift.on_remote_drift == "repair":
                fleet.push(expected)
                fleet.verify(expected.digests())
        nodes = node_outcomes(fleet)
    for name, changes in drifted.items():
        status = NodeStatus.REPAIRED if nodes[name].status in GOOD else nodes[name].status
        nodes[name] = replace(nodes[name], changes=changes, status=status)
    return nodes, drifted, clock


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
