"""Rotate one repository across the fleet, safely (SPEC safety rules 1-3) or not at all.

Order: recover the journal, check the hook block, verify (syncing first) that every
node holds the current state, and only then promote the staged key locally, push in
two phases, verify, run hooks. If a node cannot be verified the rotation is deferred
and nothing changes anywhere, unless --force.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from keysyncd.actions.distribute import finish_report, push_keyset, record_nodes, start_fleet
from keysyncd.actions.local import open_repository, policy_of, prepare, rotate_local
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.keyring import KeySet
from keysyncd.core.nodeplan import diff
from keysyncd.core.policy import RotationPlan, plan_rotation
from keysyncd.core.report import Report
from keysyncd.io.fleet import FleetAction, NodeResult, Progress
from keysyncd.io.hooks import HookRun, run_hooks
from keysyncd.io.state import RepositoryState, load_state, save_state

log = logging.getLogger(__name__)
NEW_KEY = "(new key)"


@dataclass(frozen=True)
class RotateResult:
    """The outcome of ``rotate`` for one repository; ``report`` is None for a dry run."""

    outcome: str
    plan: RotationPlan | None
    report: Report | None
    messages: list[str] = field(default_factory=list)
    node_plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, NodeResult] = field(default_factory=dict)


def rotate_repository(
    config: Config,
    repository: RepositoryConfig,
    trigger: str,
    now: float,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> RotateResult:
    """Rotate ``repository`` once; the caller holds the lock. See the module docstring.

    ``cancel`` (set when the daemon stops) abandons the rotation safely between steps.
    """
    repo = open_repository(repository)
    keyset, state, _ = prepare(repo, load_state(config.state_dir, repository.name), now)
    if not dry_run:
        save_state(config.state_dir, state)
    state, blocked = _retry_blocking_hook(config, repository, state, dry_run)
    if blocked:
        return _refuse(config, repository, trigger, now, state, blocked, dry_run)
    plan = plan_rotation(keyset.indices, state.history, policy_of(repository), now)
    fleet = (
        start_fleet(config, repository, list(config.nodes), progress, cancel)
        if config.nodes
        else None
    )
    try:
        return _rotate(config, repository, trigger, now, dry_run, force, keyset, state, plan, fleet)
    finally:
        if fleet is not None:
            fleet.finish()


def _rotate(
    config: Config,
    repository: RepositoryConfig,
    trigger: str,
    now: float,
    dry_run: bool,
    force: bool,
    keyset: KeySet,
    state: RepositoryState,
    plan: RotationPlan,
    fleet: FleetAction | None,
) -> RotateResult:
    results = fleet.results if fleet else {}
    if fleet is not None:
        if dry_run:
            fleet.inspect(keyset.digests())
        else:
            push_keyset(fleet, keyset)  # safety rule 1: every node holds the staged key first
    unverified = {name: r for name, r in results.items() if not r.ok}
    if fleet is not None and fleet.cancel is not None and fleet.cancel.is_set() and not dry_run:
        # stopping: never promote now, even with --force; the next run starts over safely
        force = False
        unverified = unverified or {name: r for name, r in results.items()}
    messages = [_kept(plan)] if plan.keep else []
    if dry_run:
        node_plans = _dry_run_nodes(fleet, keyset, plan) if fleet else {}
        if unverified and not force:
            messages.append("would defer: " + _names(unverified))
        return RotateResult("dry-run", plan, None, messages, node_plans, results)
    if unverified and not force:
        state = record_nodes(state, results, time.time())
        messages.append("deferred: not every node could be verified: " + _names(unverified))
        return _give_up(
            config, repository, trigger, now, state, results, plan, "deferred", messages, {}
        )
    if unverified:
        messages.append(
            "FORCED: rotated although these nodes were not verified: " + _names(unverified)
        )
    hook_runs = run_hooks(
        "before_rotate",
        repository.hooks.before_rotate,
        _document(repository, plan, state),
        repository.hooks.timeout,
    )
    if hook_runs and not hook_runs[-1].ok:
        messages.append("not rotated: " + hook_runs[-1].describe())
        details = {"hooks": [h.to_json() for h in hook_runs]}
        return _give_up(
            config, repository, trigger, now, state, results, plan, "failed", messages, details
        )
    repo = open_repository(repository)
    rotated = rotate_local(
        repo, keyset, state, policy_of(repository), now, lambda s: save_state(config.state_dir, s)
    )
    state = rotated.state
    if fleet is not None:
        fleet.reset()
        push_keyset(fleet, rotated.keyset, force=force)
        state = record_nodes(state, results, time.time())
    return _after(
        config, repository, trigger, now, force, plan, state, results, messages, hook_runs
    )


def _after(
    config: Config,
    repository: RepositoryConfig,
    trigger: str,
    now: float,
    force: bool,
    plan: RotationPlan,
    state: RepositoryState,
    results: dict[str, NodeResult],
    messages: list[str],
    hook_runs: list[HookRun],
) -> RotateResult:
    all_verified = all(r.ok for r in results.values())
    if all_verified:
        after = run_hooks(
            "after_rotate",
            repository.hooks.after_rotate,
            _document(repository, plan, state),
            repository.hooks.timeout,
        )
        hook_runs = hook_runs + after
        if after and not after[-1].ok:
            messages.append(
                after[-1].describe() + "; the next rotation is blocked until it succeeds"
            )
            block = {"hook": list(after[-1].command), "status": after[-1].status, "at": time.time()}
            state = replace(state, hook_block=block)
    details = {"plan": _plan_json(plan), "hooks": [h.to_json() for h in hook_runs]}
    report = finish_report(
        config,
        repository,
        "rotate",
        trigger,
        now,
        state,
        results,
        forced=force,
        messages=tuple(messages),
        details=details,
    )
    if report.outcome != "ok" or state.hook_block:
        _on_failure(config, repository, report)
    outcome = "partial" if report.outcome == "ok" and state.hook_block else report.outcome
    return RotateResult(outcome, plan, report, messages, results=results)


def _give_up(
    config: Config,
    repository: RepositoryConfig,
    trigger: str,
    now: float,
    state: RepositoryState,
    results: dict[str, NodeResult],
    plan: RotationPlan,
    outcome: str,
    messages: list[str],
    details: dict[str, Any],
) -> RotateResult:
    """Write the report of a rotation that did not happen, run on_failure, return the result."""
    report = finish_report(
        config,
        repository,
        "rotate",
        trigger,
        now,
        state,
        results,
        outcome=outcome,
        messages=tuple(messages),
        details=details,
    )
    _on_failure(config, repository, report)
    return RotateResult(outcome, plan, report, messages, results=results)


def _retry_blocking_hook(
    config: Config, repository: RepositoryConfig, state: RepositoryState, dry_run: bool
) -> tuple[RepositoryState, str | None]:
    """Re-run a failed after_rotate hook; return the state and why rotation stays blocked."""
    if not state.hook_block:
        return state, None
    if dry_run:
        return state, _blocked_message(state.hook_block)
    runs = run_hooks(
        "after_rotate",
        repository.hooks.after_rotate,
        _document(repository, None, state),
        repository.hooks.timeout,
    )
    if runs and not runs[-1].ok:
        block = {"hook": list(runs[-1].command), "status": runs[-1].status, "at": time.time()}
        state = replace(state, hook_block=block)
        save_state(config.state_dir, state)
        return state, _blocked_message(block)
    state = replace(state, hook_block=None)
    save_state(config.state_dir, state)
    return state, None


def _blocked_message(block: dict[str, Any]) -> str:
    command = " ".join(block.get("hook") or [])
    return (
        f"rotation blocked: after_rotate hook {command!r} exited with status "
        f"{block.get('status')}; it must succeed before the next rotation"
    )


def _refuse(
    config: Config,
    repository: RepositoryConfig,
    trigger: str,
    now: float,
    state: RepositoryState,
    why: str,
    dry_run: bool,
) -> RotateResult:
    if dry_run:
        return RotateResult("deferred", None, None, [why])
    report = finish_report(
        config, repository, "rotate", trigger, now, state, {}, outcome="deferred", messages=(why,)
    )
    return RotateResult("deferred", None, report, [why])


def _on_failure(config: Config, repository: RepositoryConfig, report: Report) -> None:
    document = json.dumps(report.to_json()).encode()
    for run in run_hooks(
        "on_failure", repository.hooks.on_failure, document, repository.hooks.timeout
    ):
        if not run.ok:
            log.warning("%s: %s", repository.name, run.describe())


def _document(
    repository: RepositoryConfig, plan: RotationPlan | None, state: RepositoryState
) -> bytes:
    return json.dumps(
        {
            "repository": repository.name,
            "generation": state.generation,
            "plan": _plan_json(plan) if plan else None,
            "digests": {str(i): d for i, d in sorted(state.digests.items())},
        }
    ).encode()


def _plan_json(plan: RotationPlan) -> dict[str, Any]:
    return {
        "new_primary": plan.new_primary,
        "demoted": plan.demoted,
        "retired": list(plan.retire),
        "kept": [{"index": k.index, "reason": k.reason, "safe_at": k.safe_at} for k in plan.keep],
        "resulting": list(plan.resulting),
    }


def _kept(plan: RotationPlan) -> str:
    return "; ".join(f"key {k.index} kept beyond max_active_keys: {k.reason}" for k in plan.keep)


def _names(results: dict[str, NodeResult]) -> str:
    return ", ".join(
        f"{name} ({r.error.reason if r.error else r.status})" for name, r in sorted(results.items())
    )


def _dry_run_nodes(
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
            shown[name] = {"error": str(result.error) if result.error else result.status}
            continue
        node_plan = diff(expected, result.view)
        shown[name] = {"primary": plan.new_primary, **node_plan.changes()}
    return shown
