"""Rotate a symmetric repository (fernet, credential) across the fleet, safely (SPEC rules
1-3) or not at all, in the action shell: every node synced first, the plan made once, the
staged key promoted only if every node is verified (else deferred), pushed in two phases.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keysyncd.actions.context import ActionResult, Run, node_outcomes
from keysyncd.actions.distribute import Symmetric
from keysyncd.actions.local import rotate_local
from keysyncd.actions.preview import foresee_rotation, plan_json, rotation_plan
from keysyncd.actions.shell import Act, Gate, execute
from keysyncd.core.clock import ClockCheck
from keysyncd.core.journal import RepositoryState
from keysyncd.core.report import NodeOutcome
from keysyncd.core.vocabulary import GOOD, Action, Outcome
from keysyncd.io.remote.fleet import push_keyset


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
        """Return the rotation plan, made once."""
        self.rotation = rotation_plan(self.run, self.keyset, state, act.started)
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
        return self.checked(state)

    def _defer(self, act: Act, gated: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        act.outcome = act.outcome or Outcome.DEFERRED
        unverified = ", ".join(gated.unverified)
        if gated.clock_untrusted:
            act.messages.append("deferred: the controller's clock is not trusted (see below)")
        if unverified:
            act.messages.append(f"deferred: not every node could be verified: {unverified}")
        return self.checked(self.state)

    def foresee(self, act: Act) -> tuple[dict[str, dict[str, Any]], Outcome | None]:
        """Return what each node would get, and the real rotation's outcome."""
        return foresee_rotation(self.fleet, self.keyset, self.rotation, self.force, act.messages)
