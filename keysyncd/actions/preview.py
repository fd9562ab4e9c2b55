"""The symmetric plans as reports and dry runs show them; what a dry run would do."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from keysyncd.actions.context import Run
from keysyncd.core.journal import RepositoryState
from keysyncd.core.keyring import KeySet
from keysyncd.core.kinds import SymmetricModel
from keysyncd.core.nodeplan import diff
from keysyncd.core.policy import KeptKey, RotationPlan
from keysyncd.core.vocabulary import NodeStatus, Outcome, outcome_after_push
from keysyncd.io.remote.fleet import FleetAction

if TYPE_CHECKING:
    from keysyncd.io.remote.jwsfleet import JwsFleet

# A node that differs is synced before the promotion; one that failed or diverged defers it.
STOPS_THE_GATE = (NodeStatus.FAILED, NodeStatus.DIVERGED)

NEW_KEY = "(new key)"


def plan_json(plan: RotationPlan) -> dict[str, Any]:
    """Return a rotation plan as reports, hooks and dry runs show it."""
    return {
        "new_primary": plan.new_primary,
        "demoted": plan.demoted,
        **retirement_json(plan.retire, plan.keep, plan.resulting),
    }


def retirement_json(
    retire: Collection[int], keep: Collection[KeptKey], resulting: Collection[int]
) -> dict[str, Any]:
    """Return the keys a plan retires and keeps (with why), and the keys it leaves."""
    return {
        "retired": list(retire),
        "kept": [{"index": k.index, "reason": k.reason, "safe_at": k.safe_at} for k in keep],
        "resulting": list(resulting),
    }


def foresee_rotation(
    fleet: FleetAction | None, keyset: KeySet, plan: RotationPlan, force: bool, said: list[str]
) -> tuple[dict[str, dict[str, Any]], Outcome]:
    """Return what each node would get and the outcome (``said``: why it would defer)."""
    if fleet is None:
        return {}, Outcome.OK
    staged = keyset.digests()[0]
    expected = {i: d for i, d in keyset.digests().items() if i not in plan.retire}
    expected[plan.new_primary] = staged
    expected[0] = NEW_KEY
    shown = {
        name: {"primary": plan.new_primary, **diff(expected, r.view, fleet.ownership).changes()}
        if r.view is not None
        else {"error": r.error.detail if r.error else r.status}
        for name, r in fleet.results.items()
    }
    stop = sorted(n for n, r in fleet.results.items() if r.outcome().status in STOPS_THE_GATE)
    if stop and not force:
        said.append("would defer: not every node could be verified: " + ", ".join(stop))
        return shown, Outcome.DEFERRED
    return shown, predicted(fleet)


def predicted(fleet: FleetAction | JwsFleet) -> Outcome:
    """Return the outcome the real action would have, from what a dry run read."""
    return outcome_after_push(
        (r.outcome().status, not (r.plan and r.plan.unfixable)) for r in fleet.results.values()
    )


def previews(fleet: FleetAction | JwsFleet) -> dict[str, dict[str, Any]]:
    """Return what each node would get from a dry run's plan (or why it could not be read)."""
    return {
        name: r.plan.changes() if r.plan else {"error": r.error.detail if r.error else "?"}
        for name, r in fleet.results.items()
    }


def rotation_plan(run: Run, keyset: KeySet, state: RepositoryState, now: float) -> RotationPlan:
    """Return the rotation of ``keyset``; raise KeysyncError if it cannot rotate."""
    planner = run.repository.key_kind.model_as(SymmetricModel).plan_rotation
    return planner(keyset.indices, state.history, run.repository.policy(), now)
