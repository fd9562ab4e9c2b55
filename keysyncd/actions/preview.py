"""Dry runs: load and decide as the real action would, read the nodes, and write nothing.

No lock, no temp file removed, no recovery carried out, no state saved, no report written:
what recovery *would* do is shown as a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keysyncd.actions.context import DRY_RUN, ActionResult, Run, node_outcomes
from keysyncd.actions.local import Local, policy_of, reconciled
from keysyncd.core import journal
from keysyncd.core.keyring import KeySet
from keysyncd.core.kinds import SymmetricModel
from keysyncd.core.nodeplan import diff
from keysyncd.core.policy import RotationPlan, left_to_the_fleet, retired_note
from keysyncd.core.report import NodeOutcome
from keysyncd.core.text import plural
from keysyncd.core.vocabulary import NodeStatus, Outcome, outcome_after_push
from keysyncd.errors import RepositoryError
from keysyncd.io.remote.fleet import FleetAction

# A node that differs is synced before the promotion; one that failed or diverged defers it.
STOPS_THE_GATE = (NodeStatus.FAILED, NodeStatus.DIVERGED)

NEW_KEY = "(new key)"


def preview_rotation(run: Run, local: Local, force: bool) -> ActionResult:
    """Return what ``rotate`` would do now, including recovery, without changing anything."""
    keyset = after_recovery(local)
    problems = local.problems()
    if problems:
        raise RepositoryError("invalid repository: " + "; ".join(problems))
    state, _ = reconciled(run, local.state, keyset, run.clock())
    messages = [] if local.recovery.action == "none" else ["would " + local.recovery.describe()]
    if local.temp_files:
        messages.append(f"would remove {plural(len(local.temp_files), 'leftover temp file')}")
    if state.hook_block is not None:
        messages.append(
            "would first run the pending after_rotate migration (once every node holds the "
            "current keys) and rotate only if it succeeds; " + state.hook_block.describe()
        )
    plan = rotation_plan(run, keyset, state, run.clock())
    if plan.keep:
        messages.append(plan.kept_note())
    with run.fleet(observe_clock=False) as fleet:
        if fleet is not None:
            fleet.inspect(keyset.digests())
        nodes = node_outcomes(fleet)
        preview = _node_previews(fleet, keyset, plan) if fleet is not None else {}
    unreachable = [n for n, node in sorted(nodes.items()) if node.status in STOPS_THE_GATE]
    would = outcome_after_push(_predicted(fleet, nodes))
    if unreachable and not force:
        messages.append("would defer: not every node could be verified: " + ", ".join(unreachable))
        would = Outcome.DEFERRED
    return ActionResult(
        run.repository.name,
        DRY_RUN,
        None,
        nodes,
        tuple(messages),
        rotation=plan,
        preview=preview,
        recovery=local.recovery,
        would=would,
        plan=plan_json(plan),
    )


def plan_json(plan: RotationPlan) -> dict[str, Any]:
    """Return a rotation plan as reports, hooks and dry runs show it."""
    return {
        "new_primary": plan.new_primary,
        "demoted": plan.demoted,
        "retired": list(plan.retire),
        "kept": [{"index": k.index, "reason": k.reason, "safe_at": k.safe_at} for k in plan.keep],
        "resulting": list(plan.resulting),
    }


def after_recovery(local: Local) -> KeySet:
    """Return the key set the repository would hold once recovery ran (on disk: unchanged)."""
    gone = set(local.recovery.retire) | {local.recovery.unlink} - {None}
    keys = local.scan.keyset.keys
    return KeySet.of(key for index, key in keys.items() if index not in gone)


def _node_previews(
    fleet: FleetAction, keyset: KeySet, plan: RotationPlan
) -> dict[str, dict[str, Any]]:
    """Return what each node would get: its diff against the state after the rotation."""
    staged = keyset.digests()[0]
    expected = {i: d for i, d in keyset.digests().items() if i not in plan.retire}
    expected[plan.new_primary] = staged
    expected[0] = NEW_KEY
    shown: dict[str, dict[str, Any]] = {}
    for name, result in fleet.results.items():
        if result.view is None:
            shown[name] = {"error": result.error.detail if result.error else result.status}
            continue
        shown[name] = {
            "primary": plan.new_primary,
            **diff(expected, result.view, fleet.ownership).changes(),
        }
    return shown


def preview_sync(run: Run, local: Local, node: str | None, force: bool) -> ActionResult:
    """Return what ``sync`` would push to each node, changing nothing anywhere."""
    keyset, state, problems = after_recovery(local), local.state, local.problems()
    if problems:
        raise RepositoryError("invalid repository: " + "; ".join(problems))
    if node is not None and local.recovery.action != "none":  # as sync --node refuses
        raise RepositoryError(
            f"{run.repository.name}: sync --node would refuse: it never changes the "
            f"controller's repository, and an interrupted rotation must be finished first "
            f"({local.recovery.describe()}): run 'keysyncd sync' without --node"
        )
    policy = policy_of(run.repository)
    due = journal.due_retirement(state, keyset.indices, policy, run.clock())
    # sync --node retires nothing (the controller stays as it is): the node gets every key
    retire = due.retire if node is None else ()
    expected = {i: d for i, d in keyset.digests().items() if i not in retire}
    messages: tuple[str, ...] = ()
    if due.retire:
        messages = (
            (retired_note(policy, due.retire, would=True),)
            if node is None
            else (left_to_the_fleet(due.retire),)
        )
    with run.fleet(node, observe_clock=False) as fleet:
        preview: dict[str, dict[str, Any]] = {}
        if fleet is not None:
            fleet.inspect(expected, force)
            for name, result in fleet.results.items():
                if result.plan is not None:
                    preview[name] = result.plan.changes()
                else:
                    preview[name] = {"error": result.error.detail if result.error else "?"}
        nodes = node_outcomes(fleet)
    would = outcome_after_push(_predicted(fleet, nodes))
    return ActionResult(
        run.repository.name, DRY_RUN, None, nodes, messages, preview=preview, would=would
    )


def _predicted(
    fleet: FleetAction | None, nodes: Mapping[str, NodeOutcome]
) -> list[tuple[str, bool]]:
    """Return each node's (status, whether a push can fix it), for the outcome a dry run
    predicts."""
    unfixable = set()
    if fleet is not None:
        unfixable = {n for n, r in fleet.results.items() if r.plan is not None and r.plan.unfixable}
    return [(node.status, name not in unfixable) for name, node in nodes.items()]


def rotation_plan(
    run: Run, keyset: KeySet, state: journal.RepositoryState, now: float
) -> RotationPlan:
    """Return the rotation of ``keyset`` at ``now`` by the planner of the repository's kind
    (the one planner, for the dry run and the real run). Raise KeysyncError if the set
    cannot rotate (no staged key 0 or no primary)."""
    planner = run.repository.key_kind.model_as(SymmetricModel).plan_rotation
    return planner(keyset.indices, state.history, policy_of(run.repository), now)
