"""Fleet actions on one repository: sync (push + read-back) and verify (read-only).

sync: load -> recover, reconcile, retire what is now safe (rule 2) -> push in two phases
and verify -> commit. verify: load -> read every node -> commit. ``sync --dry-run`` reads
the nodes and shows what each would get, writing nothing anywhere.
"""

from __future__ import annotations

import logging
from typing import Any

from keysyncd.actions.context import DRY_RUN, ActionResult, Draft, Run, commit, node_outcomes
from keysyncd.actions.local import load_local, open_repository, policy_of, recover, retire_due
from keysyncd.core import journal
from keysyncd.core.journal import RepositoryState
from keysyncd.core.keyring import KeySet
from keysyncd.core.policy import plan_retirement
from keysyncd.core.report import NodeOutcome
from keysyncd.core.vocabulary import Action
from keysyncd.errors import RepositoryError
from keysyncd.io.fleet import push_keyset
from keysyncd.io.state import load_state

log = logging.getLogger(__name__)


def recorded(run: Run, state: RepositoryState, nodes: dict[str, NodeOutcome]) -> RepositoryState:
    """Return ``state`` with the nodes' outcomes, demotions confirmed if every node verified."""
    state = journal.record_nodes(state, nodes, run.clock())
    return journal.confirm_if_all_verified(state, run.node_names, run.clock())


def sync_repository(
    run: Run, node: str | None = None, force: bool = False, dry_run: bool = False
) -> ActionResult:
    """Push the local repository to every node (or one) and verify it by read-back.

    The caller holds the lock (unless ``dry_run``). Raise RepositoryError if the local
    repository is invalid (nothing is pushed then).
    """
    started = run.clock()
    local = load_local(run)
    if dry_run:
        return _preview(run, local.scan.keyset, local.state, local.problems(), node, force)
    recovered = recover(run, local)
    keyset, state = recovered.valid()
    state, foreign = journal.reconcile(state, keyset.digests(), started)
    if foreign:
        log.warning(
            "%s: local keys changed outside keysyncd; now generation %d",
            run.repository.name,
            state.generation,
        )
    keyset, state, retired = retire_due(run, local.repository, keyset, state)
    messages = (f"retired keys {list(retired)}: no live token can need them",) if retired else ()
    with run.fleet(node) as fleet:
        if fleet is not None:
            push_keyset(fleet, keyset, force)
        nodes = node_outcomes(fleet)
    state = recorded(run, state, nodes)
    return commit(run, state, Draft(Action.SYNC, started, nodes, forced=force, messages=messages))


def verify_repository(run: Run, node: str | None = None) -> ActionResult:
    """Read every node (or one) and compare it with the local repository; change no key."""
    started = run.clock()
    state = load_state(run.config.state_dir, run.repository.name)
    keyset = open_repository(run.repository).load()
    with run.fleet(node) as fleet:
        if fleet is not None:
            fleet.inspect(keyset.digests())
        nodes = node_outcomes(fleet)
    return commit(run, recorded(run, state, nodes), Draft(Action.VERIFY, started, nodes))


def _preview(
    run: Run,
    keyset: KeySet,
    state: RepositoryState,
    problems: list[str],
    node: str | None,
    force: bool,
) -> ActionResult:
    """Return what ``sync`` would push to each node, changing nothing anywhere."""
    if problems:
        raise RepositoryError("invalid repository: " + "; ".join(problems))
    due = plan_retirement(keyset.indices, state.history, policy_of(run.repository), run.clock())
    expected = {i: d for i, d in keyset.digests().items() if i not in due.retire}
    messages = (
        (f"would retire keys {list(due.retire)}: no live token can need them",)
        if (due.retire)
        else ()
    )
    with run.fleet(node) as fleet:
        preview: dict[str, dict[str, Any]] = {}
        if fleet is not None:
            fleet.inspect(expected, force)
            for name, result in fleet.results.items():
                if result.plan is not None:
                    preview[name] = result.plan.changes()
                else:
                    preview[name] = {"error": result.error.detail if result.error else "?"}
        nodes = node_outcomes(fleet)
    return ActionResult(run.repository.name, DRY_RUN, None, nodes, messages, preview=preview)
