"""One shell for the write actions of every kind (rotate, sync, init and adopt):

load -> phase before the gate (the nodes brought to, or read at, the controller's current
keys) -> a pending after_rotate migration first (a rotation waits for it) -> the plan (one
value, made once by the kind's pure planner) -> staging -> the gate -> before_rotate -> the
gate again on every node read anew (once a hook ran) -> promote and the phase after ->
after_rotate -> the outcome, decided once -> commit -> on_failure for a rotation not ok.

The kind brings its steps (``Steps``); the hooks, the migration block (SPEC rule 9), the
one outcome and the one commit are here, so that every kind has them by construction. A
dry run builds the same plan with the same planner and shows it (``ActionResult.plan``);
the real run records it in its report (``details.plan``).

``adopt`` takes the parts of that sequence that fit it (``adopt``, ``Adoption``): load (the
nodes read) -> the plan (what is adopted, one value) -> write it -> one outcome -> commit;
its dry run stops after the plan and returns it.
It has no gate, no promotion and no hooks because it pushes nothing: it takes keys the nodes
already use (safety rule 14 decides which), and the next sync pushes them through the shell.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from keysyncd.actions.afterrotate import hook_document, migrate_when_ready
from keysyncd.actions.context import ActionResult, Draft, Run, commit
from keysyncd.core.adoption import Adopted
from keysyncd.core.clock import ClockCheck
from keysyncd.core.journal import RepositoryState
from keysyncd.core.report import NodeOutcome, Report
from keysyncd.core.vocabulary import Action, Outcome, outcome_of
from keysyncd.io.runtime.hooks import HookRun, run_hooks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gate:
    """The promotion decision (safety rules 1 and 10): promote, or defer naming the
    unverified nodes (or the clock)."""

    promote: bool
    unverified: tuple[str, ...]  # "node3 (unreachable)" for each node not verified
    forced: bool
    clock_untrusted: bool = False


@dataclass
class Act:
    """One write action as it goes: what it is, its plan (made once, as JSON), the clock's
    judgement, and what it has to say so far. ``rotating``: this run may promote new keys
    (a rotation with a trusted clock); ``outcome``: one the kind decided (deferred, failed),
    None to take it from the nodes."""

    run: Run
    action: Action
    started: float
    rotating: bool = False
    clock: ClockCheck | None = None
    plan: dict[str, Any] | None = None
    forced: bool = False
    migrated: bool = False  # the steps already ran the after_rotate migration (revoke)
    outcome: Outcome | None = None
    messages: list[str] = field(default_factory=list)
    hooks: list[HookRun] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)  # more ActionResult fields

    def draft(self, nodes: Mapping[str, NodeOutcome], outcome: Outcome | None) -> Draft:
        """Return the report draft of this action so far."""
        details = dict(self.details)
        if self.plan is not None:
            details["plan"] = self.plan
        if self.hooks or self.action == Action.ROTATE:
            details["hooks"] = [hook.to_json() for hook in self.hooks]
        messages = tuple(self.messages)
        return Draft(
            self.action, self.started, nodes, outcome, self.forced, messages, details, self.clock
        )


class Steps(Protocol):
    """A kind's steps of one write action, between the shell's (the connections to the
    nodes are open from ``before_gate`` to the end of ``promote``)."""

    def before_gate(self, act: Act) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Connect, judge the clock (``act.clock``), bring the nodes to (or read them at)
        the current keys; return the journal recording those checks, and the nodes."""

    def plan(self, act: Act, state: RepositoryState) -> dict[str, Any]:
        """Return the plan of this run (the kind's pure planner) as JSON."""

    def gate(self, act: Act, state: RepositoryState) -> Gate:
        """Stage what the plan makes (the phase before the gate) and decide the gate."""

    def regate(self, act: Act, gate: Gate) -> Gate:
        """Read every node anew and return the gate decided again on what it holds now (the
        shell calls it once a hook ran since ``gate`` read them, even a failed one: rule 1,
        and no node reported as it was before the hook); a gate that does not promote
        stays so."""

    def promote(self, act: Act, gate: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Promote as ``gate`` allows (nothing when it does not) and run the phase after;
        return the journal and every node's outcome."""

    def close(self) -> None:
        """Close the connections to the nodes, whatever happened."""


class Adoption(Protocol):
    """A kind's steps of adopt, made with the run, the source node and whether it is a dry
    run (which reads the nodes as the real run does, writing nothing anywhere)."""

    def __init__(self, run: Run, source: str, dry: bool) -> None: ...

    def read(self, act: Act, connections: ExitStack) -> RepositoryState:
        """Refuse where keysyncd already holds keys; connect (in ``connections``, closed
        before ``take``), read the source and the other nodes (``act.clock``: the clock,
        where the kind needs it; not in a dry run); return the journal."""

    def plan(self, act: Act, state: RepositoryState) -> Adopted:
        """Return what is adopted (its ``details`` as JSON are the plan) and say it in
        ``act.messages``; raise KeysyncError where nothing may be adopted."""

    def take(self, act: Act, state: RepositoryState) -> RepositoryState:
        """Write what the plan adopts; return the journal recording it."""


def adopt(run: Run, adoption: type[Adoption], source: str, dry_run: bool = False) -> Adopted:
    """Adopt node ``source``'s keys with a kind's ``adoption`` steps; return what was adopted,
    once committed (the report records the plan as ``details.plan`` and ``details.adopt``),
    or, for ``dry_run``, what would be (the same plan; nothing written, nothing committed).
    Raise what the steps raise (KeysyncError: nothing was written or committed)."""
    act = Act(run, Action.ADOPT, run.clock())
    steps = adoption(run, source, dry_run)
    with ExitStack() as connections:
        state = steps.read(act, connections)
        adopted = steps.plan(act, state)
    if dry_run:
        return adopted
    act.plan = act.details["adopt"] = dict(adopted.details)
    finish(act, steps.take(act, state), {}, migrate=False)  # a migration waits for a sync
    return adopted


def execute(act: Act, steps: Steps) -> ActionResult:
    """Run ``steps`` in the shell; return the committed result. Raise what the steps raise
    (KeysyncError: nothing was committed; the connections are closed all the same)."""
    try:
        state, nodes = steps.before_gate(act)
        if act.rotating and state.hook_block is not None:
            state, runs, pending = migrate_when_ready(act.run, state)
            act.hooks += runs
            if pending is not None:  # nothing rotates while its keys may still be needed
                act.messages.append(pending)
                return finish(act, state, nodes, Outcome.DEFERRED, migrate=False)
        act.plan = steps.plan(act, state)
        gated = steps.gate(act, state)
        if gated.promote and act.rotating and not before_rotate(act, state):
            gated, act.outcome = Gate(False, (), False), Outcome.FAILED
        if act.hooks:  # a hook ran since the gate read the nodes: a hand may have changed one
            gated = steps.regate(act, gated)
        state, nodes = steps.promote(act, gated)
    finally:
        steps.close()
    promoted = gated.promote and act.rotating
    return finish(act, state, nodes, promoted=promoted, migrate=not act.migrated)


def before_rotate(act: Act, state: RepositoryState) -> bool:
    """Run the before_rotate hooks given the plan; return True if they all succeeded (else
    the reason is one of ``act.messages``: nothing is promoted)."""
    hooks = act.run.repository.hooks
    document = hook_document(act.run, state, act.plan)
    runs = run_hooks("before_rotate", hooks.before_rotate, document, hooks.timeout, act.run.cancel)
    act.hooks += runs
    if runs and not runs[-1].ok:
        act.messages.append("not rotated: " + runs[-1].describe())
        return False
    return True


def finish(
    act: Act,
    state: RepositoryState,
    nodes: Mapping[str, NodeOutcome],
    outcome: Outcome | None = None,
    promoted: bool = False,
    migrate: bool = True,
) -> ActionResult:
    """Run a pending after_rotate migration once every node verified the current keys (until
    it succeeds, the next rotation waits), decide the outcome once, commit; a rotation that
    is not ok runs on_failure with its report. Return the result. ``migrate``: False when
    this action already tried the migration."""
    after: list[HookRun] = []
    pending = None
    if migrate:
        state, after, pending = migrate_when_ready(act.run, state)
        act.hooks += after
    if pending is not None and after and act.action == Action.ROTATE:
        act.messages.append(
            after[-1].describe() + "; the next rotation is blocked until it succeeds"
        )
    elif pending is not None and promoted:
        act.messages.append(
            "after_rotate did not run: not every node verified the new keys; the next "
            "rotation is blocked until it has run and succeeded"
        )
    elif pending is not None and outcome is None and act.outcome is None:
        act.messages.append(pending)  # a sync, init: the migration it retried is pending
    outcome = outcome or act.outcome or outcome_of(node.status for node in nodes.values())
    if outcome == Outcome.OK and promoted and state.hook_block is not None:
        outcome = Outcome.PARTIAL  # final before the commit: report, journal, index agree
    result = commit(act.run, state, act.draft(nodes, outcome), plan=act.plan, **act.result)
    result = replace(result, promoted=promoted)  # promoted: whatever the nodes did
    if act.action == Action.ROTATE and result.outcome != Outcome.OK:
        assert result.report is not None  # noqa: S101 - commit always writes one
        on_failure(act.run, result.report)
    return result


def on_failure(run: Run, report: Report) -> None:
    """Run the on_failure hooks with ``report`` on their standard input (a failing one is
    logged: it changes nothing)."""
    document = json.dumps(report.to_json()).encode()
    hooks = run.repository.hooks
    for hook in run_hooks("on_failure", hooks.on_failure, document, hooks.timeout, run.cancel):
        if not hook.ok:
            log.warning("%s: %s", run.repository.name, hook.describe())
