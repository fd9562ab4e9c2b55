"""Drift for ``jws`` repositories: the controller's store checked, every node verified and,
with ``drift.on_remote_drift: repair``, brought back by a sync (a node's private.pem that
is not keysyncd's gets a new pair)."""

from __future__ import annotations

import logging

from keysyncd.actions.context import ActionResult, Draft, Run, commit, remember
from keysyncd.actions.jws import Options, converge, store_of, verify
from keysyncd.core import journal
from keysyncd.core.vocabulary import GOOD, Action, Outcome
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


def check_nodes(run: Run) -> ActionResult | None:
    """Verify every node; if one drifted and repair is on, sync (phase order kept)."""
    if not run.config.nodes:
        return None
    state = load_state(run.config.state_dir, run.repository.name)
    if state.local_problems:
        return None
    checked = verify(run)
    drifted = [name for name, node in checked.nodes.items() if node.status not in GOOD]
    if not drifted or run.config.drift.on_remote_drift != "repair":
        return checked
    log.warning("%s: drift on %s: repairing", run.repository.name, ", ".join(drifted))
    return converge(run, Options(), Action.DRIFT)
