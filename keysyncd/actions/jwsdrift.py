"""Drift for ``jws`` repositories: the controller's store checked, every node verified and,
with ``drift.on_remote_drift: repair``, brought back by a sync (a node's private.pem that
is not keysyncd's gets a new pair). Unreachable nodes back off as for every kind."""

from __future__ import annotations

import logging
import random
from typing import Any

from keysyncd.actions.context import ActionResult, Draft, Run, check_clock, commit, remember
from keysyncd.actions.drift import record_check
from keysyncd.actions.jws import Options, converge, store_of
from keysyncd.actions.jwsload import Connections, expect, load
from keysyncd.core import journal
from keysyncd.core.nodes import due_nodes
from keysyncd.core.report import NodeOutcome
from keysyncd.core.vocabulary import GOOD, RETRIED_WITH_BACKOFF, Action, NodeStatus, Outcome
from keysyncd.io.local.state import load_state

log = logging.getLogger(__name__)


def check_store(run: Run) -> ActionResult | None:
    """Report an invalid key store (every check, until fixed); None when it is valid."""
    started = run.clock()
    state = load_state(run.config.state_dir, run.repository.name)
    problems = store_of(run).scan().problems
    if not problems:
        if state.local_problems:
            log.info("%s: the key store is valid again", run.repository.name)
            remember(run, journal.local_validity(state, ())[0])
        return None
    for problem in problems:
        log.error("%s: invalid key store, nothing pushed: %s", run.repository.name, problem)
    state, new = journal.local_validity(state, problems)
    state = journal.counted(state, "drift:local_invalid") if new else state
    details = {"local": {"valid": False, "problems": list(problems)}}
    draft = Draft(Action.DRIFT, started, outcome=Outcome.FAILED, messages=problems, details=details)
    return commit(run, state, draft)


def check_nodes(run: Run, rng: random.Random | None = None) -> ActionResult | None:
    """Verify every node not backing off (the backoff of ``drift.record_check``: an
    unreachable node is retried later, not at every check); if a node drifted and repair
    is on, sync every node (phase order kept: ``converge``)."""
    if not run.config.nodes:
        return None
    started = run.clock()
    state = load_state(run.config.state_dir, run.repository.name)
    if state.local_problems:
        return None
    due, waiting = due_nodes(state, run.node_names, started)
    keys = load(run)
    nodes: dict[str, NodeOutcome] = {}
    drifted: dict[str, dict[str, Any]] = {}
    clock = check_clock(run, keys.state, None)
    if due:
        with Connections(run, due) as fleet:
            clock = check_clock(run, keys.state, fleet)
            fleet.inspect(expect(keys))
            nodes = {name: result.outcome() for name, result in fleet.results.items()}
            drifted = {
                name: result.plan.changes()
                for name, result in fleet.results.items()
                if result.status == NodeStatus.DIFFERS and result.plan
            }
    # what a sync can mend (an unreachable node waits for its next attempt instead)
    mend = [n for n, node in nodes.items() if node.status not in GOOD and not _unreachable(node)]
    if mend and run.config.drift.on_remote_drift == "repair":
        log.warning("%s: drift on %s: repairing", run.repository.name, ", ".join(mend))
        return converge(run, Options(), Action.DRIFT)
    return record_check(run, keys.state, started, (nodes, drifted, clock), waiting, rng)


def _unreachable(node: NodeOutcome) -> bool:
    return node.reason in RETRIED_WITH_BACKOFF
