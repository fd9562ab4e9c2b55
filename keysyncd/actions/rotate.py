"""Rotate one repository of a symmetric kind (fernet, credential) across the fleet, safely
(SPEC safety rules 1-3) or not at all: the symmetric steps in the action shell
(``keysyncd.actions.shell``: hooks, the migration block, one outcome, one commit).

load (keys, journal, recovery) -> sync every node to the current state -> (a pending
migration first) -> the rotation plan, made once -> the gate: promote only if every node is
verified, else defer -> before_rotate -> promote locally; push in two phases; verify ->
after_rotate -> commit (one report). ``--dry-run`` loads and plans with the same planner,
reads the nodes, and writes nothing anywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from keysyncd.actions.context import ActionResult, Run, check_clock, node_outcomes
from keysyncd.actions.local import Local, load_local, reconciled, recover, rotate_local
from keysyncd.actions.preview import plan_json, preview_rotation, rotation_plan
from keysyncd.actions.shell import Act, Gate, execute
from keysyncd.core.clock import ClockCheck
from keysyncd.core.journal import RepositoryState
from keysyncd.core.nodes import checked
from keysyncd.core.report import NodeOutcome
from keysyncd.core.vocabulary import GOOD, Action, Outcome
from keysyncd.io.remote.fleet import FleetAction, push_keyset

__all__ = ["Gate", "gate", "plan_json", "rotate_repository"]


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
    return execute(Act(run, Action.ROTATE, started, rotating=True), _Symmetric(run, local, force))


class _Symmetric:
    """The steps of a symmetric rotation (see ``keysyncd.actions.shell.Steps``)."""

    def __init__(self, run: Run, local: Local, force: bool) -> None:
        self.run, self.local, self.force = run, local, force
        self.connections = contextlib.ExitStack()
        self.fleet: FleetAction | None = None

    def before_gate(self, act: Act) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Recover, then sync every node to the current state (rule 1: every node holds the
        staged key first); return the journal recording the checks, and the nodes."""
        self.keyset, state = recover(self.run, self.local).valid()
        state, _ = reconciled(self.run, state, self.keyset, act.started)
        self.fleet = self.connections.enter_context(self.run.fleet())
        if self.fleet is not None:
            push_keyset(self.fleet, self.keyset)  # rule 1: every node holds the staged key first
        act.clock = self.clock = check_clock(self.run, state, self.fleet)
        return self._checked(state)

    def plan(self, act: Act, state: RepositoryState) -> dict[str, Any]:
        """Return the rotation plan, made once, after the migration it may depend on."""
        self.rotation = rotation_plan(self.run, self.keyset, state, act.started)
        if self.rotation.keep:
            act.messages.append(self.rotation.kept_note())
        act.result["rotation"] = self.rotation
        return plan_json(self.rotation)

    def gate(self, act: Act, state: RepositoryState) -> Gate:
        """Return the gate (the staged key is on every node already: nothing to stage)."""
        self.state = state
        return gate(node_outcomes(self.fleet), self.force, self.run.cancelled, self.clock)

    def promote(self, act: Act, gated: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Promote locally and push in two phases, or defer; return the journal, the nodes."""
        if not gated.promote:
            return self._defer(act, gated)
        if gated.forced:
            act.forced = True
            unverified = ", ".join(gated.unverified)
            act.messages.append(
                f"FORCED: rotated although these nodes were not verified: {unverified}"
            )
        keyset, state = rotate_local(
            self.run, self.local.repository, self.keyset, self.state, self.rotation, self.clock
        )
        if self.fleet is not None:
            self.fleet.reset()
            if act.hooks:  # a hook ran since the nodes were read: read them again
                self.fleet.forget_views()
            push_keyset(self.fleet, keyset, force=gated.forced)
        return self._checked(state)

    def _defer(self, act: Act, gated: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        act.outcome = act.outcome or Outcome.DEFERRED
        unverified = ", ".join(gated.unverified)
        if gated.clock_untrusted:
            act.messages.append("deferred: the controller's clock is not trusted (see below)")
        if unverified:
            act.messages.append(f"deferred: not every node could be verified: {unverified}")
        return self._checked(self.state)

    def _checked(self, state: RepositoryState) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        nodes = node_outcomes(self.fleet)
        return checked(state, nodes, self.run.node_names, self.run.clock(), self.clock), nodes

    def close(self) -> None:
        """Close every connection."""
        self.connections.close()
