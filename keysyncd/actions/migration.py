"""confirm-migration: the operator's word that every credential was re-encrypted with a key
(credential keys retire by migration, never by time); it also clears a failed hook's block.
"""

from __future__ import annotations

from keysyncd.actions.context import (
    ActionResult,
    Draft,
    Run,
    check_clock,
    commit,
    node_outcomes,
)
from keysyncd.actions.inspect import open_repository
from keysyncd.core import journal
from keysyncd.core.keyring import KeySet
from keysyncd.core.kinds import KINDS
from keysyncd.core.nodes import checked
from keysyncd.core.vocabulary import Action
from keysyncd.errors import KeysyncError, UsageError
from keysyncd.io.local.state import load_state


def confirm_migration(run: Run, primary: int) -> ActionResult:
    """Record that every credential was migrated to key ``primary``; return the result.
    Raise UsageError if the kind does not retire by migration or ``primary`` is not
    current; KeysyncError if the local keys changed or a node does not hold them now."""
    repository = run.repository
    started = run.clock()
    state, keyset = _confirmable(run, primary)
    with run.fleet() as fleet:
        clock = check_clock(run, state, fleet)
        if fleet is not None:
            fleet.inspect(keyset.digests())
        nodes = node_outcomes(fleet)
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
    """Return the journal and local keys if ``primary`` may be confirmed; raise as
    ``confirm_migration`` does otherwise."""
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
