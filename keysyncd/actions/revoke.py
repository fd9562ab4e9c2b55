"""Revocation of a leaked symmetric key (fernet, credential; SPEC section 10) in the action
shell: journal it first -> a leaked primary: every node holds the staged key, the gate ->
promote or replace -> push -> credential keys: the migration succeeds -> delete everywhere at
once -> read back. Finished only once every node was verified without the key; until then it
blocks rotation, and the next sync, rotate, revoke or drift check finishes it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from keysyncd.actions.afterrotate import hook_document, run_after_rotate
from keysyncd.actions.context import (
    ActionResult,
    Run,
    node_outcomes,
    write_ahead,
)
from keysyncd.actions.distribute import NEW_KEY, Symmetric, gate
from keysyncd.actions.inspect import open_repository
from keysyncd.actions.local import rotate_local
from keysyncd.actions.preview import against, predicted
from keysyncd.actions.revoked import settle_revocation
from keysyncd.actions.shell import Act, Gate, execute
from keysyncd.core import journal, revocation
from keysyncd.core.journal import RepositoryState
from keysyncd.core.policy import KeyHistory, RotationPlan, migrated_past
from keysyncd.core.report import NodeOutcome
from keysyncd.core.revocation import Revocation, RevocationPlan, plan_revocation
from keysyncd.core.vocabulary import Action, Outcome
from keysyncd.errors import UsageError
from keysyncd.io.local.state import load_state
from keysyncd.io.remote.fleet import push_keyset

log = logging.getLogger(__name__)
GAVE_WAY = "the revocation under way waited only for nodes to answer: this one took its place"


@dataclass(frozen=True)
class Target:
    """The key to revoke (full digest; None: finish the revocation under way) and why."""

    digest: str | None
    reason: str = ""


def revoke_repository(
    run: Run, target: Target, force: bool = False, dry_run: bool = False
) -> ActionResult:
    """Revoke ``target`` in ``run.repository`` (the caller holds the lock, unless ``dry_run``);
    return the committed result (a dry run: the plan). Raise UsageError if nothing names a key,
    RepositoryError if the repository is invalid."""
    act = Act(run, Action.REVOKE, run.clock(), forced=force)
    steps = Revoke(run, force, target, dry_run)
    return steps.preview(act) if dry_run else execute(act, steps)


def finish_unfinished(run: Run, nodes_only: bool = False) -> ActionResult | None:
    """Finish the revocation under way, if any (its own ``--force`` kept); return its result.
    ``nodes_only`` (the daemon's check): only one the controller is done with; a credential
    key waiting for its migration waits for the operator, not for a hook retried each check."""
    pending = load_state(run.config.state_dir, run.repository.name).revocation
    if pending is None:
        return None
    if nodes_only and pending.digest in open_repository(run.repository).load().digests().values():
        return None
    log.warning("%s: finishing the revocation under way first", run.repository.name)
    return revoke_repository(run, Target(pending.digest, pending.reason), pending.forced)


class Revoke(Symmetric):
    """The steps of a revocation (``shell.Steps``), a sync's with the key taken out."""

    def __init__(self, run: Run, force: bool, target: Target, dry: bool) -> None:
        super().__init__(run, force, None, dry)
        self.target = target

    def before_gate(self, act: Act) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Load, name the key, journal the revocation, connect; a leaked primary: push the
        current keys (every node must hold the staged key before it is promoted)."""
        state = self.before = self.load(act)
        pending = state.revocation
        digest = self.target.digest or (pending.digest if pending is not None else None)
        if digest is None:
            raise UsageError(f"{self.run.repository.name}: no revocation under way: name the key")
        held, name = self.keyset.digests().values(), self.run.repository.name
        pending = revocation.succeeds(pending, (digest,), held, name)
        self.gave_way = pending != state.revocation  # said once the gate let it go on
        policy = self.run.repository.policy()
        self.revoking = plan_revocation(
            self.keyset.digests(), digest, state.history, policy.retire_by
        )
        self.forced_delete = self.force or (pending is not None and pending.forced)
        if not self.dry:  # journaled before anything changes for it, on any node
            reason = pending.reason if pending is not None else self.target.reason
            record = pending or Revocation(digest, reason, act.started, self.force)
            state = revocation.begin(state, record)
            write_ahead(self.run, state)
        self.connect(act, state)
        if self.fleet is not None and self.revoking.promote:
            if self.dry:
                self.fleet.inspect(self.keyset.digests())
            else:
                push_keyset(self.fleet, self.keyset)  # rule 1: every node holds the staged key
            return self.checked(state)
        return state, {}

    def plan(self, act: Act, state: RepositoryState) -> dict[str, Any]:
        """Return the revocation plan; record what dies in ``act.details["revoke"]``."""
        plan = self.revoking
        reason = state.revocation.reason if state.revocation else self.target.reason
        span = revocation.token_span(state.history, plan.index, act.started)
        act.details["revoke"] = {
            "reason": reason,
            "revoked": [plan.digest],
            "index": plan.index,
            "role": plan.role,
            "tokens": span,
            "still_held_by": [],
            "credentials_lost": False,
        }
        act.messages.append(revocation.dies(plan, span, self.run.repository.policy().retire_by))
        return plan.to_json()

    def gate(self, act: Act, state: RepositoryState) -> Gate:
        """Return the gate: a leaked primary waits for every node verified holding the staged
        key (SPEC rule 1); anything else goes at once."""
        self.state = state
        if self.revoking.promote:
            return gate(node_outcomes(self.fleet), self.force, self.run.cancelled, self.clock)
        return Gate(True, (), False)

    def promote(self, act: Act, gated: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Carry out the plan, as the module says; return the journal and every node."""
        if not gated.promote:
            return self._refused(act, gated)
        if self.gave_way:
            act.messages.append(GAVE_WAY)
        plan, keyset, state = self.revoking, self.keyset, self.state
        replaced = plan.promote or plan.new_staged
        if replaced:
            keyset, state = self._replace(act, gated, state)
        # the new primary on every node before the leaked key goes (phase 1, phase 2); a
        # migration needs every node verified holding it; a key gone here: clean the nodes
        if replaced or plan.migrate or plan.delete is None:
            self._push(keyset)
            state, _ = self.checked(state)
        if plan.delete is not None:
            if plan.migrate:
                state, migrated = self._migrate(act, state, plan.delete)
                if not migrated and not self._lose_credentials(act, plan, state):
                    act.outcome = Outcome.FAILED
                    return self.checked(state)
            keyset, state = self._delete(state, plan.delete)
            self._push(keyset)
        state, nodes = self.checked(state)
        return self._settle(act, state, nodes, keyset.digests()), nodes

    def _replace(
        self, act: Act, gated: Gate, state: RepositoryState
    ) -> tuple[Any, RepositoryState]:
        """Promote the staged key (a leaked primary) or replace it (a leaked staged key) on the
        controller; return the new keys and journal."""
        repository = self.local.repository
        if self.revoking.promote:
            if gated.forced:
                act.forced = True
                said = "FORCED: promoted although these nodes were not verified: "
                act.messages.append(said + ", ".join(gated.unverified))
            old = max(self.keyset.indices)
            rotation = RotationPlan(old + 1, old, (), (), (*self.keyset.indices, old + 1))
            return rotate_local(self.run, repository, self.keyset, state, rotation, self.clock)
        repository.replace_staged(repository.kind.generate())
        after = repository.load()
        history = {**state.history, 0: KeyHistory(created_at=self.run.clock())}
        state = journal.advance(state, after.digests(), history)
        write_ahead(self.run, state)
        return after, state

    def _delete(self, state: RepositoryState, index: int) -> tuple[Any, RepositoryState]:
        """Delete key ``index`` on the controller; return the keys and journal left."""
        repository = self.local.repository
        repository.retire((index,))
        after = repository.load()
        state = journal.retired(state, after.digests())
        write_ahead(self.run, state)
        return after, state

    def _push(self, keyset: Any) -> None:
        if self.fleet is not None:
            self.fleet.reset()
            push_keyset(self.fleet, keyset, self.force)

    def _migrate(
        self, act: Act, state: RepositoryState, index: int
    ) -> tuple[RepositoryState, bool]:
        """Run the after_rotate migration once every node holds the current keys; return the
        journal and whether no credential can still be encrypted with key ``index``."""
        if migrated_past(index, state.history):
            return state, True
        if not journal.every_node_holds(state, self.run.node_names):
            if not self.forced_delete:
                act.messages.append("the migration did not run: a node lacks the new primary")
                return state, False
            # forced: migrating now loses nothing (a node without the new primary reads the
            # migrated credentials once synced); deleting unmigrated would lose them all
            act.messages.append("FORCED: the migration runs though a node lacks the new primary")
        document = hook_document(self.run, state, act.plan)
        state, runs = run_after_rotate(self.run, state, document)
        act.hooks += runs
        act.migrated = True
        write_ahead(self.run, state)
        if not runs:
            act.messages.append("no after_rotate hook (keystone-manage credential_migrate)")
        elif state.hook_block is not None:
            act.messages.append(state.hook_block.describe())
        return state, migrated_past(index, state.history)

    def _lose_credentials(self, act: Act, plan: RevocationPlan, state: RepositoryState) -> bool:
        """Return True if ``--force`` deletes the key anyway (said loudly), else say what to do."""
        name = self.run.repository.name
        if self.forced_delete:
            act.forced = True
            act.details["revoke"]["credentials_lost"] = True
            act.messages.append(
                f"FORCED: key {plan.delete} deleted without a successful migration: credentials "
                "still encrypted with it are lost"
            )
            return True
        primary = journal.primary_index(state)
        act.messages.append(
            f"not deleted: key {plan.delete} may still encrypt credentials. Run 'keystone-manage "
            f"credential_migrate' on a node, then 'keysyncd confirm-migration --repo {name} "
            f"--primary {primary}' and 'keysyncd revoke --repo {name}' to finish; or 'keysyncd "
            f"revoke --repo {name} --force' deletes it now (credentials still encrypted with it "
            "are lost). Rotation is blocked until the revocation is finished"
        )
        return False

    def _refused(self, act: Act, gated: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """The gate refused: nothing changed for the revocation; undo its journal record."""
        act.outcome = Outcome.FAILED
        state = revocation.abandon(self.state, self.before)
        write_ahead(self.run, state)
        why = (
            "the controller's clock is not trusted"
            if gated.clock_untrusted
            else ("not every node could be verified: " + ", ".join(gated.unverified))
        )
        act.messages.append(
            f"not revoked, nothing changed: the staged key cannot be promoted ({why}); the leaked "
            "key is still the primary on every node. Bring the nodes back and revoke again, or "
            "add --force to promote now (tokens issued with the new primary fail on those "
            "nodes until they are synced)"
        )
        return self.checked(state)

    def _settle(
        self, act: Act, state: RepositoryState, nodes: dict[str, NodeOutcome], held: dict[int, str]
    ) -> RepositoryState:
        """Return the journal with the revocation finished if no node may hold the key now."""
        digest = self.revoking.digest
        if digest in held.values():  # also at another index (a damaged repository): not done
            act.outcome = Outcome.FAILED
            act.details["revoke"]["still_held_by"] = sorted(nodes)
            index = next(i for i, d in held.items() if d == digest)
            act.messages.append(
                f"not finished: the controller still holds sha256:{digest[:16]} as key {index}: "
                f"'keysyncd revoke --repo {self.run.repository.name}' goes on with it"
            )
            return state
        done = f"revoked: no node holds sha256:{digest[:16]} any more"
        return settle_revocation(self.run, act, state, nodes, done)

    def foresee(self, act: Act) -> tuple[dict[str, dict[str, Any]], Outcome | None]:
        """Return what each node would get (the dry run), and the outcome expected."""
        fleet, plan = self.fleet, self.revoking
        if fleet is None:
            return {}, Outcome.OK
        expected: dict[int, str] = dict(self.keyset.digests())
        if plan.promote:
            expected[max(expected) + 1] = expected[0]
        if plan.promote or plan.new_staged:
            expected[0] = NEW_KEY
        if plan.delete is not None:
            expected.pop(plan.delete)
        if not plan.promote:
            fleet.inspect(self.keyset.digests())
        return against(fleet, expected), predicted(fleet)
