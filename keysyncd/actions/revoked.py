"""What every kind's revocation shares (``revoke``, ``revokeall``, ``jwsrevoke``): it is
finished only once every node was verified without a revoked key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from keysyncd.core.journal import RepositoryState
from keysyncd.core.report import NodeOutcome
from keysyncd.core.revocation import finished
from keysyncd.core.vocabulary import GOOD

if TYPE_CHECKING:
    from keysyncd.actions.context import Run
    from keysyncd.actions.shell import Act


def settle_revocation(
    run: Run, act: Act, state: RepositoryState, nodes: Mapping[str, NodeOutcome], done: str
) -> RepositoryState:
    """Return the journal with the revocation finished once every node was verified (each
    read shows no revoked key), saying ``done``; else the journal as it is, and the nodes
    that may still hold a revoked key named in ``act`` (its report and messages)."""
    unverified = sorted(name for name, node in nodes.items() if node.status not in GOOD)
    act.details["revoke"]["still_held_by"] = unverified
    if unverified:
        act.messages.append(
            f"revoked on every other node; {', '.join(unverified)} may still hold a revoked key "
            f"(not verified): 'keysyncd sync --repo {run.repository.name}' removes it once they "
            "answer; rotation is blocked until then"
        )
        return state
    act.messages.append(done)
    return finished(state)
