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
from dataclasses import dataclass
from typing import Any

from keysyncd.actions.context import DRY_RUN, ActionResult, Draft, Run, commit, node_outcomes
from keysyncd.actions.local import Local, load_local, policy_of, recover, rotate_local
from keysyncd.core import journal
from keysyncd.core.journal import HookBlock, RepositoryState
from keysyncd.core.keyring import KeySet
from keysyncd.core.nodeplan import diff
from keysyncd.core.policy import RotationPlan, plan_rotation
from keysyncd.core.report import NodeOutcome, Report
from keysyncd.core.vocabulary import GOOD, Action, Outcome
from keysyncd.errors import RepositoryError
from keysyncd.io.fleet import FleetAction, push_keyset
from keysyncd.io.hooks import HookRun, run_hooks

log = logging.getLogger(__name__)
NEW_KEY = "(new key)"


@dataclass(frozen=True)
class Gate:
    """The promotion decision (safety rule 1): promote, or defer naming the unverified."""

    promote: bool
    unverified: tuple[str, ...]  # "node3 (unreachable)" for each node not verified
    forced: bool


def gate(nodes: Mapping[str, NodeOutcome], force: bool, stopping: bool) -> Gate:
    """Return whether the staged key may be promoted, given every node's verification.

    A stopping daemon never promotes, not even with --force: the next run starts over.
    """
    unverified = tuple(
        f"{name} ({node.reason or node.status})"
        for name, node in sorted(nodes.items())
        if node.status not in GOOD
    )
    if stopping:
        return Gate(False, unverified or ("stopping",), False)
    return Gate(not unverified or force, unverified, bool(unverified) and force)


def rotate_repository(run: Run, dry_run: bool = False, force: bool = False) -> ActionResult:
    """Rotate ``run.repository`` once (the caller holds the lock, unless ``dry_run``)."""
    started = run.clock()
    local = load_local(run)
    if dry_run:
        return _preview(run, local, force)
    keyset, state = recover(run, local).valid()
    state, _ = journal.reconcile(state, keyset.digests(), started)
    state, blocked = _retry_blocking_hook(run, state)
    if blocked:
        return commit(
            run, state, Draft(Action.ROTATE, started, outcome=Outcome.DEFERRED, messages=(blocked,))
        )
    plan = plan_rotation(keyset.indices, state.history, policy_of(run.repository), started)
    with run.fleet() as fleet:
        return _rotate(run, _Rotation(local, keyset, state, plan, started, force), fleet)


@dataclass(frozen=True)
class _Rotation:
    local: Local
    keyset: KeySet
    state: RepositoryState
    plan: RotationPlan
    started: float
    force: bool


def _rotate(run: Run, rotation: _Rotation, fleet: FleetAction | None) -> ActionResult:
    state, plan = rotation.state, rotation.plan
    if fleet is not None:
        push_keyset(fleet, rotation.keyset)  # rule 1: every node holds the staged key first
    decision = gate(node_outcomes(fleet), rotation.force, run.cancelled)
    messages = [_kept(plan)] if plan.keep else []
    if not decision.promote:
        messages.append(
            "deferred: not every node could be verified: " + ", ".join(decision.unverified)
        )
        state = _recorded(run, state, fleet)
        return _give_up(
            run,
            state,
            Draft(
                Action.ROTATE,
                rotation.started,
                node_outcomes(fleet),
                Outcome.DEFERRED,
                messages=tuple(messages),
            ),
            plan,
        )
    if decision.forced:
        messages.append(
            "FORCED: rotated although these nodes were not verified: "
            + ", ".join(decision.unverified)
        )
    before = run_hooks(
        "before_rotate",
        run.repository.hooks.before_rotate,
        _document(run, plan, state),
        run.repository.hooks.timeout,
    )
    if before and not before[-1].ok:
        messages.append("not rotated: " + before[-1].describe())
        draft = Draft(
            Action.ROTATE,
            rotation.started,
            node_outcomes(fleet),
            Outcome.FAILED,
            messages=tuple(messages),
            details={"hooks": _runs(before)},
        )
        return _give_up(run, state, draft, plan)
    keyset, state = rotate_local(run, rotation.local.repository, rotation.keyset, state, plan)
    if fleet is not None:
        fleet.reset()
        push_keyset(fleet, keyset, force=decision.forced)
    state = _recorded(run, state, fleet)
    return _after(run, rotation, state, fleet, messages, before, decision.forced)


def _recorded(run: Run, state: RepositoryState, fleet: FleetAction | None) -> RepositoryState:
    state = journal.record_nodes(state, node_outcomes(fleet), run.clock())
    return journal.confirm_if_all_verified(state, run.node_names, run.clock())


def _after(
    run: Run,
    rotation: _Rotation,
    state: RepositoryState,
    fleet: FleetAction | None,
    messages: list[str],
    hooks: list[HookRun],
    forced: bool,
) -> ActionResult:
    nodes = node_outcomes(fleet)
    if all(node.status in GOOD for node in nodes.values()):
        after = run_hooks(
            "after_rotate",
            run.repository.hooks.after_rotate,
            _document(run, rotation.plan, state),
            run.repository.hooks.timeout,
        )
        hooks = hooks + after
        if after and not after[-1].ok:
            messages.append(
                after[-1].describe() + "; the next rotation is blocked until it succeeds"
            )
            state = journal.block_rotation(state, _block(after[-1], run.clock()))
    details = {"plan": plan_json(rotation.plan), "hooks": _runs(hooks)}
    draft = Draft(
        Action.ROTATE,
        rotation.started,
        nodes,
        forced=forced,
        messages=tuple(messages),
        details=details,
    )
    result = commit(run, state, draft, rotation=rotation.plan)
    if state.hook_block is not None or result.outcome != Outcome.OK:
        assert result.report is not None  # noqa: S101 - commit always writes one
        _on_failure(run, result.report)
    if result.outcome == Outcome.OK and state.hook_block is not None:
        return ActionResult(
            result.repository,
            Outcome.PARTIAL,
            result.report,
            result.nodes,
            result.messages,
            rotation=rotation.plan,
        )
    return result


def _give_up(run: Run, state: RepositoryState, draft: Draft, plan: RotationPlan) -> ActionResult:
    """Commit the report of a rotation that did not happen, run on_failure, return it."""
    result = commit(run, state, draft, rotation=plan)
    assert result.report is not None  # noqa: S101 - commit always writes one
    _on_failure(run, result.report)
    return result


def _retry_blocking_hook(run: Run, state: RepositoryState) -> tuple[RepositoryState, str | None]:
    """Re-run a failed after_rotate hook; return the state and why rotation stays blocked."""
    if state.hook_block is None:
        return state, None
    runs = run_hooks(
        "after_rotate",
        run.repository.hooks.after_rotate,
        _document(run, None, state),
        run.repository.hooks.timeout,
    )
    if runs and not runs[-1].ok:
        state = journal.block_rotation(state, _block(runs[-1], run.clock()))
        return state, blocked_message(state.hook_block)
    return journal.unblock_rotation(state), None


def _block(hook: HookRun, now: float) -> HookBlock:
    return HookBlock(hook.command, hook.status, now)


def blocked_message(block: HookBlock | None) -> str:
    """Return why rotation is blocked by a failed after_rotate hook."""
    command = " ".join(block.hook) if block else ""
    status = block.status if block else None
    return (
        f"rotation blocked: after_rotate hook {command!r} exited with status {status}; it "
        "must succeed before the next rotation (each rotate retries it first)"
    )


def _on_failure(run: Run, report: Report) -> None:
    document = json.dumps(report.to_json()).encode()
    hooks = run.repository.hooks
    for hook in run_hooks("on_failure", hooks.on_failure, document, hooks.timeout):
        if not hook.ok:
            log.warning("%s: %s", run.repository.name, hook.describe())


def _document(run: Run, plan: RotationPlan | None, state: RepositoryState) -> bytes:
    return json.dumps(
        {
            "repository": run.repository.name,
            "generation": state.generation,
            "plan": plan_json(plan) if plan else None,
            "digests": {str(i): d for i, d in sorted(state.digests.items())},
        }
    ).encode()


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


def _kept(plan: RotationPlan) -> str:
    return "; ".join(f"key {k.index} kept beyond max_active_keys: {k.reason}" for k in plan.keep)


# --- the dry run: load, decide and read the nodes; write nothing ------------------------------


def _preview(run: Run, local: Local, force: bool) -> ActionResult:
    """Return what ``rotate`` would do now, including recovery, without changing anything."""
    keyset = _after_recovery(local)
    problems = local.problems()
    if problems:
        raise RepositoryError("invalid repository: " + "; ".join(problems))
    state, _ = journal.reconcile(local.state, keyset.digests(), run.clock())
    messages = [] if local.recovery.action == "none" else ["would " + local.recovery.describe()]
    if local.temp_files:
        messages.append(f"would remove {len(local.temp_files)} leftover temp file(s)")
    if state.hook_block is not None:
        messages.append(
            "would retry the after_rotate hook first; " + blocked_message(state.hook_block)
        )
    plan = plan_rotation(keyset.indices, state.history, policy_of(run.repository), run.clock())
    if plan.keep:
        messages.append(_kept(plan))
    with run.fleet() as fleet:
        if fleet is not None:
            fleet.inspect(keyset.digests())
        nodes = node_outcomes(fleet)
        preview = _node_previews(fleet, keyset, plan) if fleet is not None else {}
    unreachable = [n for n, node in sorted(nodes.items()) if node.status in ("failed", "diverged")]
    if unreachable and not force:
        messages.append("would defer: not every node could be verified: " + ", ".join(unreachable))
    return ActionResult(
        run.repository.name,
        DRY_RUN,
        None,
        nodes,
        tuple(messages),
        rotation=plan,
        preview=preview,
        recovery=local.recovery,
    )


def _after_recovery(local: Local) -> KeySet:
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
