"""``keysyncd revoke --all --force`` of a symmetric repository (SPEC section 10): a brand-new
key set, every token dies. The single-key revocation's steps (``revoke.Revoke``) applied to
every key at once: every digest journaled as revoked (before anything changes) -> the staged
key replaced on the controller and pushed (every node holds the new one) -> the gate -> the
new staged key promoted (a new staged 0) and pushed -> credential keys: the migration to the
new primary (failed: deleted anyway, as --force says, and the report says credentials are
lost) -> every revoked key deleted on the controller and every node at once -> read back. A
run after a crash plans what is left (``keysyncd.core.newkeyset``)."""

from __future__ import annotations

from typing import Any

from keysyncd.actions.context import (
    ActionResult,
    Run,
    node_outcomes,
    write_ahead,
)
from keysyncd.actions.distribute import NEW_KEY, gate
from keysyncd.actions.inspect import open_repository
from keysyncd.actions.local import rotate_local
from keysyncd.actions.preview import against, predicted
from keysyncd.actions.revoke import Revoke, Target, finish_unfinished, revoke_repository
from keysyncd.actions.revoked import settle_revocation
from keysyncd.actions.shell import Act, Gate, execute
from keysyncd.core import journal, revocation
from keysyncd.core.journal import RepositoryState
from keysyncd.core.newkeyset import every_token_dies, plan_new_key_set
from keysyncd.core.policy import KeyHistory, RotationPlan
from keysyncd.core.report import NodeOutcome
from keysyncd.core.revocation import Revocation
from keysyncd.core.vocabulary import Action, Outcome
from keysyncd.io.local.state import load_state
from keysyncd.io.remote.fleet import push_keyset


def revoke_every_key(
    run: Run, reason: str, force: bool, dry_run: bool = False, revoked: tuple[str, ...] = ()
) -> ActionResult:
    """Replace every key of ``run.repository`` (``revoked``: the digests of a revocation under
    way; none: every key the controller holds now); return the committed result (a dry run:
    the plan). The caller checked ``force`` (--all needs it) and holds the lock."""
    act = Act(run, Action.REVOKE, run.clock(), forced=force)
    steps = RevokeAll(run, force, Target(None, reason), dry_run, revoked)
    return steps.preview(act) if dry_run else execute(act, steps)


def finish_any(run: Run, nodes_only: bool = False) -> ActionResult | None:
    """Finish the revocation under way, one key or ``--all`` (``revoke.finish_unfinished``)."""
    pending = load_state(run.config.state_dir, run.repository.name).revocation
    if pending is None or not pending.more:
        return finish_unfinished(run, nodes_only)
    held = open_repository(run.repository).load().digests().values()
    if nodes_only and set(pending.digests) & set(held):
        return None  # the controller is not done: the operator finishes it (as one key's)
    return revoke_every_key(run, pending.reason, pending.forced, revoked=pending.digests)


def finish_named(run: Run, force: bool, dry_run: bool) -> ActionResult:
    """``revoke --repo R`` without a key: finish the revocation under way, whichever."""
    pending = load_state(run.config.state_dir, run.repository.name).revocation
    if pending is not None and pending.more:
        return revoke_every_key(run, pending.reason, pending.forced, dry_run, pending.digests)
    return revoke_repository(run, Target(None), force, dry_run)


class RevokeAll(Revoke):
    """The steps of ``revoke --all`` (``shell.Steps``), a revocation's for every key."""

    def __init__(
        self, run: Run, force: bool, target: Target, dry: bool, revoked: tuple[str, ...]
    ) -> None:
        super().__init__(run, force, target, dry)
        self.revoked = revoked

    def before_gate(self, act: Act) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Load, journal every key as revoked, connect; replace the staged key and push it."""
        state = self.before = self.load(act)
        revoked = self.revoked or tuple(dict.fromkeys(self.keyset.digests().values()))
        policy = self.run.repository.policy()
        self.new_set = plan_new_key_set(
            self.keyset.digests(), revoked, state.history, policy.retire_by
        )
        self.forced_delete = True  # --all is --force: said before it runs
        if not self.dry:  # journaled before anything changes, on any node
            held, name = self.keyset.digests().values(), self.run.repository.name
            pending = revocation.succeeds(state.revocation, revoked, held, name)
            record = pending or Revocation(
                revoked[0], self.target.reason, act.started, True, (), revoked[1:]
            )
            state = revocation.begin(state, record)
            write_ahead(self.run, state)
        self.connect(act, state)
        if self.dry or self.fleet is None:
            return state, {}
        if self.new_set.new_staged:
            state = self._new_staged(state)
        push_keyset(self.fleet, self.keyset)  # rule 1: every node holds the staged key
        return self.checked(state)

    def _new_staged(self, state: RepositoryState) -> RepositoryState:
        """Replace the revoked staged key on the controller; return the journal."""
        repository = self.local.repository
        repository.replace_staged(repository.kind.generate())
        self.keyset = repository.load()
        history = {**state.history, 0: KeyHistory(created_at=self.run.clock())}
        state = journal.advance(state, self.keyset.digests(), history)
        write_ahead(self.run, state)
        return state

    def plan(self, act: Act, state: RepositoryState) -> dict[str, Any]:
        """Return the plan; record what dies in ``act.details["revoke"]``."""
        promoted = [e.promoted_at for e in state.history.values() if e.promoted_at is not None]
        act.details["revoke"] = {
            "reason": state.revocation.reason if state.revocation else self.target.reason,
            "revoked": list(self.new_set.revoked),
            "index": None,
            "role": "all",
            "tokens": {
                "issued_from_at": min(promoted, default=None),
                "issued_until_at": act.started,
            },
            "still_held_by": [],
            "credentials_lost": False,
        }
        act.messages.append(every_token_dies(self.run.repository.policy().retire_by))
        return self.new_set.to_json()

    def gate(self, act: Act, state: RepositoryState) -> Gate:
        """Return the gate: the revoked primary gives way once every node holds the new staged
        key (--all is forced: a node that did not answer is named and synced later)."""
        self.state = state
        if self.new_set.promote:
            return gate(node_outcomes(self.fleet), True, self.run.cancelled, self.clock)
        return Gate(True, (), False)

    def promote(self, act: Act, gated: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Promote, migrate, delete every revoked key everywhere; return the journal, nodes."""
        if not gated.promote:
            return self._refused(act, gated)
        plan, state = self.new_set, self.state
        if plan.promote:
            old = max(self.keyset.indices)
            rotation = RotationPlan(old + 1, old, (), (), (*self.keyset.indices, old + 1))
            repository = self.local.repository
            self.keyset, state = rotate_local(
                self.run, repository, self.keyset, state, rotation, self.clock
            )
            self._push(self.keyset)
            state, _ = self.checked(state)
        if plan.migrate:
            state, migrated = self._migrate(act, state, max(plan.delete))
            if not migrated:
                act.details["revoke"]["credentials_lost"] = True
                act.messages.append(
                    "FORCED (--all): the old keys are deleted without a successful migration: "
                    "credentials still encrypted with them are lost"
                )
        if plan.delete:
            self.local.repository.retire(plan.delete)
            self.keyset = self.local.repository.load()
            state = journal.retired(state, self.keyset.digests())
            write_ahead(self.run, state)
            self._push(self.keyset)
        state, nodes = self.checked(state)
        return self._settle_all(act, state, nodes), nodes

    def _settle_all(
        self, act: Act, state: RepositoryState, nodes: dict[str, NodeOutcome]
    ) -> RepositoryState:
        """Return the journal with the revocation finished if no node may hold a revoked key."""
        if set(self.new_set.revoked) & set(self.keyset.digests().values()):
            act.details["revoke"]["still_held_by"] = sorted(nodes)
            return state
        done = "revoked: every node holds the new key set only"
        return settle_revocation(self.run, act, state, nodes, done)

    def foresee(self, act: Act) -> tuple[dict[str, dict[str, Any]], Outcome | None]:
        """Return what each node would get (the dry run), and the outcome expected."""
        fleet = self.fleet
        if fleet is None:
            return {}, Outcome.OK
        gone = self.new_set.delete
        expected = {i: d for i, d in self.keyset.digests().items() if i not in gone}
        expected[0] = NEW_KEY
        if self.new_set.promote:
            expected[max(self.keyset.indices) + 1] = NEW_KEY
        fleet.inspect(self.keyset.digests())
        return against(fleet, expected), predicted(fleet)
