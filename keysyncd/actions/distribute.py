"""Fleet actions on one repository: sync (push + read-back) and verify (read-only).

sync: load -> recover, reconcile, retire what is now safe (rule 2) -> push in two phases
and verify -> commit. ``sync --node`` changes only that node: it neither recovers nor
retires on the controller (the other nodes would then differ from it); it pushes the keys
as they are. verify: load -> read every node -> commit. ``sync --dry-run`` reads
the nodes and shows what each would get, writing nothing anywhere.
"""

from __future__ import annotations

import logging

from keysyncd.actions.afterrotate import migrate_when_ready
from keysyncd.actions.context import (
    ActionResult,
    Draft,
    Run,
    check_clock,
    commit,
    node_outcomes,
)
from keysyncd.actions.drift import verify_repository as verify_repository  # moved there
from keysyncd.actions.local import (
    Local,
    load_local,
    policy_of,
    reconciled,
    recover,
    retire_due,
)
from keysyncd.actions.preview import preview_sync
from keysyncd.core import journal
from keysyncd.core.journal import RepositoryState
from keysyncd.core.keyring import KeySet
from keysyncd.core.nodes import checked
from keysyncd.core.policy import left_to_the_fleet, retired_note
from keysyncd.core.recovery import recovered
from keysyncd.core.vocabulary import Action
from keysyncd.errors import RepositoryError
from keysyncd.io.remote.fleet import push_keyset

log = logging.getLogger(__name__)


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
        return preview_sync(run, local, node, force)
    keyset, state = recover(run, local).valid() if node is None else as_found(run, local)
    state, foreign = reconciled(run, state, keyset, started)
    if foreign:
        log.warning(
            "%s: local keys changed outside keysyncd; now generation %d",
            run.repository.name,
            state.generation,
        )
    with run.fleet(node) as fleet:
        # retirement is timed by the clock, judged once the nodes' clocks are read
        clock = check_clock(run, state, fleet)
        retired: tuple[int, ...] = ()
        if node is None:  # sync --node changes one node, never the controller (the others
            # would differ from it): a retirement waits for a sync of the whole fleet
            keyset, state, retired = retire_due(run, local.repository, keyset, state, clock)
        if fleet is not None:
            push_keyset(fleet, keyset, force)
        nodes = node_outcomes(fleet)
    messages = [retired_note(policy_of(run.repository), retired)] if retired else []
    if node is not None:
        policy = policy_of(run.repository)
        due = journal.due_retirement(state, keyset.indices, policy, run.clock())
        messages += [left_to_the_fleet(due.retire)] if due.retire else []
    state = checked(state, nodes, run.node_names, run.clock(), clock)
    # a migration skipped by a rotation runs as soon as every node holds its primary
    state, migration, pending = migrate_when_ready(run, state)
    if pending is not None:
        messages.append(pending)
    details = {"hooks": [hook.to_json() for hook in migration]} if migration else {}
    draft = Draft(Action.SYNC, started, nodes, None, force, tuple(messages), details, clock)
    return commit(run, state, draft)


def as_found(run: Run, local: Local) -> tuple[KeySet, RepositoryState]:
    """Return the repository's keys and journal for ``sync --node``, which changes nothing
    on the controller: raise RepositoryError if it is invalid, or if an interrupted rotation
    must be finished or undone first (that is done by a whole-fleet sync or rotate)."""
    if local.recovery.action != "none":
        raise RepositoryError(
            f"{run.repository.name}: not synced: sync --node never changes the controller's "
            f"repository, and an interrupted rotation must be finished first "
            f"({local.recovery.describe()}): run 'keysyncd sync' without --node"
        )
    problems = local.problems()
    if problems:
        raise RepositoryError("invalid repository: " + "; ".join(problems))
    state = local.state
    if state.pending is not None:  # a rotation that never reached the disk: journal only
        state = recovered(state, local.recovery, local.scan.keyset.digests())
    return local.scan.keyset, state
