"""The after_rotate hook and the block it leaves (SPEC rule 9): journaled before it starts,
cleared only by its success, so that a hook that failed, timed out, was killed, could not
run, or ran while keysyncd was killed, blocks the next rotation until it succeeds.

The hook is a migration (for credential keys, ``keystone-manage credential_migrate``): it
re-encrypts with the primary, so it may start only once every node holds that primary (a
node without it would still encrypt with the old one). ``migrate_when_ready`` is the one
place that decides it, for rotate, sync and the daemon's periodic check alike; a success is
journaled as the primary's ``migrated_at``, which is what retires credential keys.
"""

from __future__ import annotations

import json

from keysyncd.actions.context import Run, write_ahead
from keysyncd.core import journal
from keysyncd.core.journal import HookBlock, RepositoryState
from keysyncd.io.runtime.hooks import HookRun, run_hooks

NOT_READY = (
    "the pending after_rotate migration did not run: not every node is verified holding "
    "the current keys; it runs as soon as they are (sync, or the daemon's next check)"
)


def run_after_rotate(
    run: Run, state: RepositoryState, document: bytes
) -> tuple[RepositoryState, list[HookRun]]:
    """Run the after_rotate hooks given ``document``; return the state (blocked unless every
    hook succeeded, the block journaled before the first one started; on success the
    primary's migration recorded) and their runs. The caller has seen every node verified
    holding the current keys.

    Raise StateError if the block cannot be journaled (then no hook runs).
    """
    hooks = run.repository.hooks
    if not hooks.after_rotate:
        return journal.unblock_rotation(state), []
    state = journal.block_rotation(state, HookBlock(hooks.after_rotate[0], None, run.clock()))
    write_ahead(run, state)  # the block is on disk before the hook starts: kill -9 keeps it
    runs = run_hooks("after_rotate", hooks.after_rotate, document, hooks.timeout, run.cancel)
    if runs[-1].ok:
        primary = journal.primary_index(state)
        if primary is None:
            return journal.unblock_rotation(state), runs
        return journal.migrated(state, primary, run.clock()), runs
    failed = runs[-1]
    block = HookBlock(failed.command, failed.status, run.clock(), failed.problem)
    return journal.block_rotation(state, block), runs


def migrate_when_ready(
    run: Run, state: RepositoryState
) -> tuple[RepositoryState, list[HookRun], str | None]:
    """Run a pending after_rotate migration if every configured node is verified holding the
    current keys (``state`` already records this action's checks); return the state, the
    hook runs and, while the migration is still pending, why (None: nothing is pending)."""
    if state.hook_block is None:
        return state, [], None
    if not journal.every_node_holds(state, run.node_names):
        return state, [], NOT_READY
    state, runs = run_after_rotate(run, state, hook_document(run, state))
    if state.hook_block is None:
        return state, runs, None
    return state, runs, state.hook_block.describe()


def hook_document(run: Run, state: RepositoryState, plan: object | None = None) -> bytes:
    """Return the JSON document a rotation hook reads on its standard input."""
    return json.dumps(
        {
            "repository": run.repository.name,
            "generation": state.generation,
            "plan": plan,
            "digests": {str(i): d for i, d in sorted(state.digests.items())},
        }
    ).encode()
