"""Symmetric drift, locally (watch) or on nodes (periodic check), in ``readonly``'s flows
(local changes told from keysyncd's own by the journal, never by timing); and
confirm-migration, the operator's word that every credential was re-encrypted with a key
(credential keys retire by migration, never by time; it also clears a failed hook's block)."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from functools import partial

from keysyncd.actions import readonly
from keysyncd.actions.context import (
    ActionResult,
    Draft,
    Run,
    check_clock,
    commit,
    node_outcomes,
    write_ahead,
)
from keysyncd.actions.inspect import open_repository
from keysyncd.actions.local import load_local, reconciled, recover, refuse_revoked
from keysyncd.actions.readonly import Only
from keysyncd.core import journal
from keysyncd.core.journal import RepositoryState
from keysyncd.core.keyring import KeySet
from keysyncd.core.kinds import KINDS
from keysyncd.core.nodes import checked
from keysyncd.core.report import NodeOutcome
from keysyncd.core.vocabulary import Action, Outcome
from keysyncd.errors import KeysyncError, UsageError
from keysyncd.io.local.state import load_state
from keysyncd.io.remote.fleet import FleetAction, push_keyset

log = logging.getLogger(__name__)
REPLACED = "drift:local_replaced"  # counted: keysyncd_drift_events_total{kind="local_replaced"}


class SymmetricReads:
    """The symmetric part of the read-only shell (``readonly.Kind``)."""

    words = ("local repository", "not pushed")

    def found(self, run: Run) -> tuple[RepositoryState, tuple[str, ...], KeySet | None]:
        missing = _missing(run)
        if missing is not None:
            return missing, (f"{run.repository.path}: {MISSING}",), None
        recovered = recover(run, load_local(run))
        return recovered.state, recovered.problems, recovered.keyset

    def changed(
        self, run: Run, state: RepositoryState, keys: KeySet, started: float, revalidated: bool
    ) -> ActionResult | None:
        state, foreign = reconciled(run, state, keys, started)
        refuse_revoked(run, state, keys)  # the watch never pushes a revoked key again
        if not foreign:
            write_ahead(run, state)  # nothing to report: the journal only
            return None
        return _foreign(run, state, keys, started)

    def load(self, run: Run) -> tuple[RepositoryState, KeySet, dict[int, str]]:
        state = load_state(run.config.state_dir, run.repository.name)
        keys = open_repository(run.repository).load()
        refuse_revoked(run, state, keys)  # drift repair never pushes a revoked key again
        return state, keys, keys.digests()

    def connect(self, run: Run, only: Only) -> AbstractContextManager[FleetAction | None]:
        return run.fleet(only)

    def repair(self, run: Run, fleet: FleetAction, keys: KeySet) -> None:
        """Push the key set to the nodes that drifted and read them back, now."""
        fleet.push(keys)
        fleet.verify(keys.digests())


# the symmetric kinds' flows: the shell's, with their part
check_local = partial(readonly.check_local, kind=SymmetricReads())
check_fleet = partial(readonly.check_fleet, kind=SymmetricReads())
verify_repository = partial(readonly.verify, kind=SymmetricReads())


def _foreign(run: Run, state: RepositoryState, keys: KeySet, started: float) -> ActionResult:
    """Commit a valid change made outside keysyncd (pushed with ``on_local_change: sync``)."""
    state = journal.counted(state, "drift:local_change")
    message = f"local repository changed outside keysyncd: now generation {state.generation}"
    log.warning("%s: %s", run.repository.name, message)
    nodes: dict[str, NodeOutcome] = {}
    action, clock = Action.DRIFT, None
    if run.config.drift.on_local_change == "sync" and run.config.nodes:
        with run.fleet() as fleet:
            clock = check_clock(run, state, fleet)
            if fleet is not None:
                push_keyset(fleet, keys)
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
    """Return the journal if the directory vanished after keysyncd had keys in it, else None."""
    if run.repository.path.exists():
        return None
    state = load_state(run.config.state_dir, run.repository.name)
    return state if state.digests else None


def report_replaced(run: Run) -> ActionResult:
    """Commit the report that the repository's directory was replaced and is watched again."""
    state = journal.counted(load_state(run.config.state_dir, run.repository.name), REPLACED)
    message = (
        f"repository directory {run.repository.path} was replaced (moved away and recreated, "
        "or restored): the local watch now follows the new directory"
    )
    log.warning("%s: %s", run.repository.name, message)
    details = {"watch": {"available": True, "event": "replaced"}}
    draft = Draft(Action.DRIFT, run.clock(), messages=(message,), details=details)
    return commit(run, state, draft)


def report_watch_failure(run: Run, failure: str) -> ActionResult:
    """Commit the report that the local watch of the repository is unavailable."""
    state = load_state(run.config.state_dir, run.repository.name)
    message = f"local watch unavailable ({failure}); the periodic check still covers it"
    details = {"watch": {"available": False, "error": failure}}
    now = run.clock()
    draft = Draft(Action.DRIFT, now, outcome=Outcome.FAILED, messages=(message,), details=details)
    return commit(run, state, draft)


def confirm_migration(run: Run, primary: int) -> ActionResult:
    """Record that every credential was migrated to key ``primary``; return the result.
    Raise UsageError if the kind does not retire by migration or ``primary`` is not
    current; KeysyncError if the local keys changed or a node does not hold them now."""
    repository = run.repository
    started = run.clock()
    state, keyset = _confirmable(run, primary)
    loaded = state, keyset, keyset.digests()
    (nodes, _, clock), _ = readonly.read(run, SymmetricReads(), loaded, None)  # every node
    state = checked(state, nodes, run.node_names, run.clock(), clock)
    if not journal.every_node_holds(state, run.node_names):
        missing = [n for n in run.node_names if not journal.every_node_holds(state, [n])]
        raise KeysyncError(
            f"{repository.name}: not confirmed: {', '.join(missing)} not verified holding the "
            "current keys; run keysyncd sync, then credential_migrate, then confirm again"
        )
    state = journal.migrated(state, primary, run.clock())
    message = (
        f"migration to key {primary} confirmed by the operator: keys below it are retired "
        "at the next sync or rotation"
    )
    return commit(
        run, state, Draft(Action.MIGRATE, started, nodes, messages=(message,), clock=clock)
    )


def _confirmable(run: Run, primary: int) -> tuple[journal.RepositoryState, KeySet]:
    """Return the journal and local keys if ``primary`` may be confirmed, else raise."""
    repository = run.repository
    if KINDS[repository.kind].retire_by != "migration":
        raise UsageError(
            f"{repository.name}: confirm-migration applies to kind credential only (this is "
            f"kind {repository.kind}, whose keys retire by time)"
        )
    state = load_state(run.config.state_dir, repository.name)
    keyset = open_repository(repository).load()
    if keyset.digests() != dict(state.digests):
        raise KeysyncError(
            f"{repository.name}: the local keys changed outside keysyncd; run keysyncd sync "
            "first, then migrate and confirm again"
        )
    current = journal.primary_index(state)
    if primary != current:
        # only the current primary: every node is checked holding it now, and a migration
        # confirmed for a newer key than the one it encrypted with would retire the keys
        # its credentials still need
        raise UsageError(
            f"{repository.name}: --primary {primary} is not the current primary ({current}): "
            f"run keystone-manage credential_migrate now, then confirm --primary {current}"
        )
    return state, keyset
