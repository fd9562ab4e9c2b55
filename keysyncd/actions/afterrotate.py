"""The after_rotate hook (a migration: ``keystone-manage credential_migrate``) and its block
(SPEC rule 9): journaled before it starts, cleared only by its success. It may start only
once every node holds the primary (``migrate_when_ready``, the one place that decides it);
a success is journaled as the primary's ``migrated_at``, which retires credential keys."""

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
    """Run the after_rotate hooks (every node was seen holding the current keys); return the
    state (blocked unless all succeeded; else the migration recorded) and the runs. Raise
    StateError if the block cannot be journaled first (then no hook runs)."""
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
    """Run a pending migration once every node holds the keys; return state, runs, why not."""
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
