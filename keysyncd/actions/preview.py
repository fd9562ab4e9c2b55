"""The symmetric plans as reports and dry runs show them; what a dry run would do."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from keysyncd.core.nodeplan import diff
from keysyncd.core.policy import KeptKey, RotationPlan
from keysyncd.core.vocabulary import Outcome, outcome_after_push
from keysyncd.io.remote.fleet import FleetAction

if TYPE_CHECKING:
    from keysyncd.io.remote.jwsfleet import JwsFleet


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


def against(
    fleet: FleetAction, expected: dict[int, str], also: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Return what each node read would get to hold ``expected`` (with ``also``'s fields), or
    why it could not be read: a dry run's rows."""
    return {
        name: {
            **(also or {}),
            **diff(expected, r.view, fleet.ownership, False, fleet.revoked).changes(),
        }
        if r.view is not None
        else {"error": r.error.detail if r.error else r.status}
        for name, r in fleet.results.items()
    }
