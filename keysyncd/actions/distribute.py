"""Symmetric sync and rotate in the action shell. sync: load, recover, reconcile -> retire
what is safe (rule 2) -> push in two phases, read back (``sync --node``: that node only, no
recovery or retirement on the controller). rotate (SPEC rules 1-3): every node synced
first, the staged key promoted only if every node is verified (else deferred)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from keysyncd.actions import local
from keysyncd.actions.context import DRY_RUN, ActionResult, Run, check_clock, node_outcomes
from keysyncd.actions.local import rotate_local
from keysyncd.actions.preview import against, plan_json, predicted, previews, retirement_json
from keysyncd.actions.shell import Act, Gate, execute
from keysyncd.core import revocation
from keysyncd.core.clock import ClockCheck, judge
from keysyncd.core.journal import RepositoryState
from keysyncd.core.kinds import SymmetricModel
from keysyncd.core.nodes import checked
from keysyncd.core.policy import left_to_the_fleet, retired_note
from keysyncd.core.report import NodeOutcome
from keysyncd.core.vocabulary import GOOD, Action, NodeStatus, Outcome
from keysyncd.io.remote.fleet import FleetAction, push_keyset

log = logging.getLogger(__name__)
# A node that differs is synced before the promotion; one that failed or diverged defers it.
STOPS_THE_GATE = (NodeStatus.FAILED, NodeStatus.DIVERGED)
NEW_KEY = "(new key)"


def sync_repository(
    run: Run, node: str | None = None, force: bool = False, dry_run: bool = False
) -> ActionResult:
    """Push the keys to every node (or one) and read back; raise RepositoryError if invalid."""
    act = Act(run, Action.SYNC, run.clock(), forced=force)
    steps = Symmetric(run, force, node, dry=dry_run)
    return steps.preview(act) if dry_run else execute(act, steps)


class Symmetric:
    """The steps of a symmetric sync (``shell.Steps``), which rotate and init extend."""

    def __init__(self, run: Run, force: bool, node: str | None = None, dry: bool = False) -> None:
        self.run, self.force, self.node, self.dry = run, force, node, dry
        self.connections = contextlib.ExitStack()
        self.fleet: FleetAction | None = None

    def load(self, act: Act) -> RepositoryState:
        """Load, recover, reconcile the keys (``keyset``); return the journal (RepositoryError)."""
        self.local = found = local.load_local(self.run)
        if self.node is not None:
            self.keyset, state = local.as_found(self.run, found, self.dry)
        else:  # a dry run only says what recovery would do
            told = act.messages if self.dry else None
            self.keyset, state = local.recover(self.run, found, told).valid()
        state, foreign = local.reconciled(self.run, state, self.keyset, act.started)
        local.refuse_revoked(self.run, state, self.keyset)  # a revoked key: never pushed again
        if foreign and not self.dry:
            said = "%s: local keys changed outside keysyncd; now generation %d"
            log.warning(said, self.run.repository.name, state.generation)
        return state

    def connect(self, act: Act, state: RepositoryState, quorum: bool = True) -> None:
        """Connect to the nodes, judge the clock by them (dry: none read, taken as trusted)."""
        # the fleet knows the revoked keys from the journal (``Run.fleet``): cleaned wherever seen
        self.fleet = self.connections.enter_context(self.run.fleet(self.node, not self.dry))
        if self.dry:
            self.clock = judge(self.run.clock(), None, (), self.run.config.clock.max_skew)
        else:
            act.clock = self.clock = check_clock(self.run, state, self.fleet, quorum)

    def before_gate(self, act: Act) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Load, connect, judge the clock (it times retirement); return the journal."""
        state = self.load(act)
        self.connect(act, state)
        return state, {}

    def plan(self, act: Act, state: RepositoryState) -> dict[str, Any]:
        """Return what is retired first (rule 2), what is kept and why; say it in ``act``."""
        due, self.retire = local.due_now(self.run, self.keyset, state, self.clock)
        if self.node is not None:  # sync --node changes one node, never the controller (the
            # others would differ from it): a retirement waits for a sync of the whole fleet
            self.retire = ()
            act.messages += [left_to_the_fleet(due.retire)] if due.retire else []
        if self.retire:
            policy = self.run.repository.policy()
            act.messages.append(retired_note(policy, self.retire, would=self.dry))
        resulting = [i for i in self.keyset.indices if i not in self.retire]
        return retirement_json(self.retire, due.keep, resulting)

    def gate(self, act: Act, state: RepositoryState) -> Gate:
        """Return the gate of an action that promotes no key: go on."""
        self.state = state
        return Gate(True, (), False)

    def regate(self, act: Act, gated: Gate) -> Gate:
        """Return ``gated`` (nothing is promoted), the nodes' views forgotten: the push
        reads every node anew."""
        if self.fleet is not None:
            self.fleet.forget_views()
        return gated

    def promote(self, act: Act, gated: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Retire as planned, push in two phases, read back; return the journal, the nodes."""
        keys = self.local.repository, self.keyset, self.state, self.clock, self.retire
        keyset, state, _ = local.retire_due(self.run, *keys)
        if self.fleet is not None:
            push_keyset(self.fleet, keyset, self.force)
            act.messages += revoked_again(self.fleet, state)
        return self.checked(state)

    def checked(self, state: RepositoryState) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Return the journal recording every node's outcome, and the outcomes."""
        nodes = node_outcomes(self.fleet)
        return checked(state, nodes, self.run.node_names, self.run.clock(), self.clock), nodes

    def preview(self, act: Act) -> ActionResult:
        """Return the dry run: the plan the real run makes, and what each node would get."""
        with self.connections:
            state, _ = self.before_gate(act)
            act.plan = self.plan(act, state)
            preview, would = self.foresee(act)
            nodes = node_outcomes(self.fleet)
        return ActionResult(
            self.run.repository.name, DRY_RUN, None, nodes, tuple(act.messages),
            preview=preview, would=would, plan=act.plan, **act.result,
        )  # fmt: skip

    def foresee(self, act: Act) -> tuple[dict[str, dict[str, Any]], Outcome | None]:
        """Read every node; return what each would get, and the real sync's outcome."""
        if self.fleet is None:
            return {}, Outcome.OK
        expected = {i: d for i, d in self.keyset.digests().items() if i not in self.retire}
        self.fleet.inspect(expected, self.force)
        return previews(self.fleet), predicted(self.fleet)

    def close(self) -> None:
        """Close every connection."""
        self.connections.close()


def revoked_again(fleet: FleetAction, state: RepositoryState) -> list[str]:
    """Return a line for every node that showed a revoked key again (before this push)."""
    if not state.revoked:
        return []
    seen = {
        name: [entry.digest for entry in result.view.entries if entry.digest is not None]
        for name, result in fleet.results.items()
        if result.view is not None
    }
    cleaned = [name for name, node in node_outcomes(fleet).items() if node.status in GOOD]
    return revocation.seen_again(seen, cleaned, state.revoked)


def gate(nodes: Mapping[str, NodeOutcome], force: bool, stopping: bool, clock: ClockCheck) -> Gate:
    """Return whether the staged key may be promoted: never while the daemon stops or the
    clock is untrusted (not even with --force, which overrides unverified nodes only)."""
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
    act = Act(run, Action.ROTATE, run.clock(), rotating=True)
    steps = _Symmetric(run, force, dry=dry_run)
    return steps.preview(act) if dry_run else execute(act, steps)


class _Symmetric(Symmetric):
    """The steps of a symmetric rotation (see ``keysyncd.actions.shell.Steps``)."""

    def before_gate(self, act: Act) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Sync every node to the current keys (rule 1); return the journal and the nodes."""
        state, _ = super().before_gate(act)
        if self.fleet is not None and self.dry:
            self.fleet.inspect(self.keyset.digests())
        elif self.fleet is not None:
            push_keyset(self.fleet, self.keyset)  # rule 1: every node holds the staged key first
        if self.dry and state.hook_block is not None:
            act.messages.append(
                "would first run the pending after_rotate migration (once every node holds "
                "the current keys) and rotate only if it succeeds; " + state.hook_block.describe()
            )
        return self.checked(state)

    def plan(self, act: Act, state: RepositoryState) -> dict[str, Any]:
        """Return the rotation plan, made once by the kind's planner (KeysyncError: none)."""
        planner = self.run.repository.key_kind.model_as(SymmetricModel).plan_rotation
        policy = self.run.repository.policy()
        self.rotation = planner(self.keyset.indices, state.history, policy, act.started)
        if self.rotation.keep:
            act.messages.append(self.rotation.kept_note())
        act.result["rotation"] = self.rotation
        return plan_json(self.rotation)

    def gate(self, act: Act, state: RepositoryState) -> Gate:
        """Return the gate (nothing to stage: every node holds the staged key already)."""
        self.state = state
        return gate(node_outcomes(self.fleet), self.force, self.run.cancelled, self.clock)

    def promote(self, act: Act, gated: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Promote locally and push in two phases, or defer; return the journal, the nodes."""
        if not gated.promote:
            return self._defer(act, gated)
        if gated.forced:
            act.forced = True
            said = "FORCED: rotated although these nodes were not verified: "
            act.messages.append(said + ", ".join(gated.unverified))
        keyset, state = rotate_local(
            self.run, self.local.repository, self.keyset, self.state, self.rotation, self.clock
        )
        if self.fleet is not None:
            self.fleet.reset()
            push_keyset(self.fleet, keyset, force=gated.forced)
        return self.checked(state)

    def regate(self, act: Act, gated: Gate) -> Gate:
        """Return the gate decided again on every node read now: a hand may have taken the
        staged key from a node or put something where the new primary goes (SPEC rule 1).
        A node that differs is not failed: a forced rotation still pushes to it."""
        if self.fleet is None:
            return gated
        self.fleet.forget_views()
        self.fleet.reset()
        self.fleet.inspect(self.keyset.digests())
        if not gated.promote:
            return gated
        return gate(node_outcomes(self.fleet), self.force, self.run.cancelled, self.clock)

    def _defer(self, act: Act, gated: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        act.outcome = act.outcome or Outcome.DEFERRED
        unverified = ", ".join(gated.unverified)
        if gated.clock_untrusted:
            act.messages.append("deferred: the controller's clock is not trusted (see below)")
        if unverified:
            act.messages.append(f"deferred: not every node could be verified: {unverified}")
        return self.checked(self.state)

    def foresee(self, act: Act) -> tuple[dict[str, dict[str, Any]], Outcome | None]:
        """Return what each node would get and the rotation's outcome (why it defers: ``act``)."""
        fleet, plan = self.fleet, self.rotation
        if fleet is None:
            return {}, Outcome.OK
        staged = self.keyset.digests()[0]
        expected = {i: d for i, d in self.keyset.digests().items() if i not in plan.retire}
        expected[plan.new_primary] = staged
        expected[0] = NEW_KEY
        shown = against(fleet, expected, {"primary": plan.new_primary})
        stop = sorted(n for n, r in fleet.results.items() if r.outcome().status in STOPS_THE_GATE)
        if stop and not self.force:
            act.messages.append("would defer: not every node could be verified: " + ", ".join(stop))
            return shown, Outcome.DEFERRED
        return shown, predicted(fleet)
