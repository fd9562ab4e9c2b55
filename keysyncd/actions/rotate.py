"""Rotate one repository across the fleet, safely (SPEC safety rules 1-3) or not at all.

load (keys, journal, recovery) -> decide (hook block, the rotation plan, made once) -> act
(sync every node to the current state; the gate: promote only if every node is verified,
else defer; promote locally; push in two phases; verify; hooks) -> commit (one report).
``--dry-run`` loads and decides, reads the nodes, and writes nothing anywhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from keysyncd.actions.afterrotate import hook_document, migrate_when_ready
from keysyncd.actions.context import (
    ActionResult,
    Draft,
    Run,
    check_clock,
    commit,
    node_outcomes,
)
from keysyncd.actions.local import (
    Local,
    load_local,
    policy_of,
    reconciled,
    recover,
    rotate_local,
)
from keysyncd.actions.preview import preview_rotation
from keysyncd.core.clock import ClockCheck
from keysyncd.core.journal import RepositoryState
from keysyncd.core.keyring import KeySet
from keysyncd.core.nodes import checked
from keysyncd.core.policy import RotationPlan, plan_rotation
from keysyncd.core.report import NodeOutcome, Report
from keysyncd.core.vocabulary import GOOD, Action, Outcome, outcome_of
from keysyncd.io.remote.fleet import FleetAction, push_keyset
from keysyncd.io.runtime.hooks import HookRun, run_hooks

log = logging.getLogger(__name__)
NEW_KEY = "(new key)"


@dataclass(frozen=True)
class Gate:
    """The promotion decision (safety rules 1 and 10): promote, or defer naming the
    unverified nodes (or the clock)."""

    promote: bool
    unverified: tuple[str, ...]  # "node3 (unreachable)" for each node not verified
    forced: bool
    clock_untrusted: bool = False


def gate(nodes: Mapping[str, NodeOutcome], force: bool, stopping: bool, clock: ClockCheck) -> Gate:
    """Return whether the staged key may be promoted, given every node's verification and
    the judgement of the controller's clock.

    A stopping daemon never promotes, not even with --force: the next run starts over. Nor
    does an untrusted clock: --force overrides unverified nodes, never the clock.
    """
    unverified = tuple(
        f"{name} ({node.reason or node.status})"
        for name, node in sorted(nodes.items())
        if node.status not in GOOD
    )
    if stopping:
        return Gate(False, unverified or ("stopping",), False)
    if not clock.trusted:
        return Gate(False, unverified, False, clock_untrusted=True)
    return Gate(not unverified or force, unverified, bool(unverified) and force)


def rotate_repository(run: Run, dry_run: bool = False, force: bool = False) -> ActionResult:
    """Rotate ``run.repository`` once (the caller holds the lock, unless ``dry_run``)."""
    started = run.clock()
    local = load_local(run)
    if dry_run:
        return preview_rotation(run, local, force)
    keyset, state = recover(run, local).valid()
    state, _ = reconciled(run, state, keyset, started)
    with run.fleet() as fleet:
        if fleet is not None:
            push_keyset(fleet, keyset)  # rule 1: every node holds the staged key first
        clock = check_clock(run, state, fleet)
        # a pending migration runs first, once every node holds the primary it migrates to;
        # while it is pending nothing rotates (its keys may still be needed)
        state = checked(state, node_outcomes(fleet), run.node_names, run.clock(), clock)
        state, migration, pending = migrate_when_ready(run, state)
        if pending is not None:
            details = {"hooks": _runs(migration)}
            nodes = node_outcomes(fleet)
            draft = Draft(Action.ROTATE, started, nodes, Outcome.DEFERRED, False, (pending,))
            return _give_up(run, state, replace(draft, details=details, clock=clock), None)
        # the plan is made once, after the migration it may depend on (credential keys)
        plan = plan_rotation(keyset.indices, state.history, policy_of(run.repository), started)
        rotation = _Rotation(local, keyset, state, plan, started, force, clock, hooks=migration)
        decision = gate(node_outcomes(fleet), force, run.cancelled, clock)
        if not decision.promote:
            return _defer(run, rotation, fleet, decision)
        return _promote(run, rotation, fleet, decision)


@dataclass
class _Rotation:
    """One rotation as it goes: what it started from, its plan (made once), and what it
    has to say so far."""

    local: Local
    keyset: KeySet
    state: RepositoryState
    plan: RotationPlan
    started: float
    force: bool
    clock: ClockCheck
    forced: bool = False
    messages: list[str] = field(default_factory=list)
    hooks: list[HookRun] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.plan.keep:
            self.messages.append(self.plan.kept_note())

    def draft(self, nodes: Mapping[str, NodeOutcome], outcome: Outcome | None = None) -> Draft:
        """Return the report draft of this rotation so far."""
        details = {"plan": plan_json(self.plan), "hooks": _runs(self.hooks)}
        messages = tuple(self.messages)
        return Draft(
            Action.ROTATE, self.started, nodes, outcome, self.forced, messages, details, self.clock
        )


def _defer(run: Run, rotation: _Rotation, fleet: FleetAction | None, gated: Gate) -> ActionResult:
    unverified = ", ".join(gated.unverified)
    if gated.clock_untrusted:
        rotation.messages.append("deferred: the controller's clock is not trusted (see below)")
    if unverified:
        rotation.messages.append(f"deferred: not every node could be verified: {unverified}")
    nodes = node_outcomes(fleet)
    state = checked(rotation.state, nodes, run.node_names, run.clock(), rotation.clock)
    return _give_up(run, state, rotation.draft(nodes, Outcome.DEFERRED), rotation.plan)


def _promote(run: Run, rotation: _Rotation, fleet: FleetAction | None, gated: Gate) -> ActionResult:
    if gated.forced:
        rotation.forced = True
        unverified = ", ".join(gated.unverified)
        rotation.messages.append(
            f"FORCED: rotated although these nodes were not verified: {unverified}"
        )
    hooks = run.repository.hooks
    document = hook_document(run, rotation.state, plan_json(rotation.plan))
    rotation.hooks += run_hooks(
        "before_rotate", hooks.before_rotate, document, hooks.timeout, run.cancel
    )
    if rotation.hooks and not rotation.hooks[-1].ok:
        rotation.messages.append("not rotated: " + rotation.hooks[-1].describe())
        draft = rotation.draft(node_outcomes(fleet), Outcome.FAILED)
        return _give_up(run, rotation.state, draft, rotation.plan)
    repository = rotation.local.repository
    keyset, state = rotate_local(
        run, repository, rotation.keyset, rotation.state, rotation.plan, rotation.clock
    )
    if fleet is not None:
        fleet.reset()
        push_keyset(fleet, keyset, force=gated.forced)
    nodes = node_outcomes(fleet)
    rotation.state = checked(state, nodes, run.node_names, run.clock(), rotation.clock)
    return _after(run, rotation, node_outcomes(fleet))


def _after(run: Run, rotation: _Rotation, nodes: Mapping[str, NodeOutcome]) -> ActionResult:
    """Run the rotation's after_rotate migration once every node verified it (until it
    succeeds, the next rotation and every retirement wait), decide the outcome once, then
    commit; on_failure runs for anything not ok."""
    rotation.state, after, pending = migrate_when_ready(run, rotation.state)
    rotation.hooks += after
    if pending is not None and after:
        rotation.messages.append(
            after[-1].describe() + "; the next rotation is blocked until it succeeds"
        )
    elif pending is not None:
        rotation.messages.append(
            "after_rotate did not run: not every node verified the new keys; the next "
            "rotation is blocked until it has run and succeeded"
        )
    outcome = outcome_of(node.status for node in nodes.values())
    if outcome == Outcome.OK and rotation.state.hook_block is not None:
        outcome = Outcome.PARTIAL  # final before the commit: report, journal, index agree
    result = commit(run, rotation.state, rotation.draft(nodes, outcome), rotation=rotation.plan)
    result = replace(result, promoted=True)  # the controller rotated, whatever the nodes did
    if result.outcome != Outcome.OK:
        assert result.report is not None  # noqa: S101 - commit always writes one
        _on_failure(run, result.report)
    return result


def _give_up(
    run: Run, state: RepositoryState, draft: Draft, plan: RotationPlan | None
) -> ActionResult:
    """Commit the report of a rotation that did not happen, run on_failure, return it."""
    result = commit(run, state, draft, rotation=plan)
    assert result.report is not None  # noqa: S101 - commit always writes one
    _on_failure(run, result.report)
    return result


def _on_failure(run: Run, report: Report) -> None:
    document = json.dumps(report.to_json()).encode()
    hooks = run.repository.hooks
    for hook in run_hooks("on_failure", hooks.on_failure, document, hooks.timeout, run.cancel):
        if not hook.ok:
            log.warning("%s: %s", run.repository.name, hook.describe())


def plan_json(plan: RotationPlan) -> dict[str, Any]:
    """Return a rotation plan as reports and hooks show it."""
    return {
        "new_primary": plan.new_primary,
        "demoted": plan.demoted,
        "retired": list(plan.retire),
        "kept": [{"index": k.index, "reason": k.reason, "safe_at": k.safe_at} for k in plan.keep],
        "resulting": list(plan.resulting),
    }


def _runs(hooks: list[HookRun]) -> list[dict[str, Any]]:
    return [hook.to_json() for hook in hooks]
