"""The after_rotate hook and the block it leaves (SPEC rule 9): journaled before it starts,
cleared only by its success, so that a hook that failed, timed out, was killed, could not
run, or ran while keysyncd was killed, blocks the next rotation until it succeeds.
"""

from __future__ import annotations

from keysyncd.actions.context import Run, write_ahead
from keysyncd.core import journal
from keysyncd.core.journal import HookBlock, RepositoryState
from keysyncd.io.hooks import HookRun, run_hooks


def run_after_rotate(
    run: Run, state: RepositoryState, document: bytes
) -> tuple[RepositoryState, list[HookRun]]:
    """Run the after_rotate hooks given ``document``; return the state (blocked unless every
    hook succeeded, the block journaled before the first one started) and their runs.

    Raise StateError if the block cannot be journaled (then no hook runs).
    """
    hooks = run.repository.hooks
    if not hooks.after_rotate:
        return journal.unblock_rotation(state), []
    state = journal.block_rotation(state, HookBlock(hooks.after_rotate[0], None, run.clock()))
    write_ahead(run, state)  # the block is on disk before the hook starts: kill -9 keeps it
    runs = run_hooks("after_rotate", hooks.after_rotate, document, hooks.timeout, run.cancel)
    if runs[-1].ok:
        return journal.unblock_rotation(state), runs
    failed = runs[-1]
    block = HookBlock(failed.command, failed.status, run.clock(), failed.problem)
    return journal.block_rotation(state, block), runs
