"""Revocation of JWS key pairs (``keysyncd revoke --repo R --node NODE | --all``, SPEC section
10) as the JWS rotation's steps (``jws._Jws``) with one more: the revocation journaled (before
anything changes) -> connect, read every node -> the converge plan with a new pair for each
revoked node (``keysyncd.core.jwsrevoke``) -> phase 1 (the new public keys on every node) ->
the gate -> phase 2 (the nodes' new private keys) -> then the revoked public keys removed from
the journal, every node (at once, no retention wait) and the store -> read back -> commit. It
is finished (its journal record cleared) once every node was verified without them; until then
it blocks rotation, and the next sync, rotate, revoke or daemon check finishes it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from keysyncd.actions.context import (
    DRY_RUN,
    ActionResult,
    Run,
    node_outcomes,
    write_ahead,
)
from keysyncd.actions.jws import Options, _Jws, _plan
from keysyncd.actions.jwsload import Connections, expect, load, tidy_store
from keysyncd.actions.preview import predicted, previews
from keysyncd.actions.revoked import settle_revocation
from keysyncd.actions.shell import Act, Gate, execute
from keysyncd.core import jwsrevoke, revocation
from keysyncd.core.journal import RepositoryState
from keysyncd.core.jws import JwsState
from keysyncd.core.nodes import checked
from keysyncd.core.report import NodeOutcome
from keysyncd.core.revocation import Revocation
from keysyncd.core.vocabulary import Action, Outcome
from keysyncd.errors import UsageError
from keysyncd.io.local.state import load_state

STEPS = (
    "make a new key pair for each revoked node (unless one waits for it already)",
    "add the new public keys to every node (phase 1)",
    "the gate: every node verified holding every public key (or --force)",
    "install each revoked node's new private key (phase 2)",
    "remove the revoked public keys from every node at once, without the retention wait",
    "read every node back: no node may hold a revoked public key",
)


@dataclass(frozen=True)
class JwsTarget:
    """The pairs to revoke: the ``nodes`` and the public keys (digests) they sign with now;
    ``every``: --all; no nodes: finish the revocation under way."""

    nodes: tuple[str, ...]
    digests: tuple[str, ...]
    reason: str = ""
    every: bool = False


def name_target(run: Run, node: str | None, every: bool, reason: str, force: bool) -> JwsTarget:
    """Return the pairs ``revoke --node NODE`` or ``--all`` names (no node: the revocation
    under way, finished); raise UsageError (exit 2, one line) if it names none, or another
    revocation is unfinished."""
    name = run.repository.name
    state = load_state(run.config.state_dir, name)
    pending = state.revocation
    if node is None and not every:
        if pending is None:
            raise UsageError(
                f"{name}: kind jws: name the node whose pair leaked (--node NODE) or --all"
            )
        return JwsTarget(pending.nodes, pending.digests, pending.reason)
    if not reason.strip():
        raise UsageError("revoke: --reason TEXT is required (it is recorded with the revocation)")
    if every and not force:
        raise UsageError(
            f"{name}: revoke --all gives every node a new key pair and removes every public key "
            "(current or kept for older tokens) at once: every JWS token dies. Add --force to do it"
        )
    nodes = run.node_names if every else [run.config.node(node or "").name]
    pairs = state.jws or JwsState()
    signing = jwsrevoke.signing_keys(pairs, nodes)
    if not signing:
        raise UsageError(f"{name}: {', '.join(nodes)} signs with no key pair keysyncd installed")
    revoked = tuple(signing.values())
    if every:  # every token dies: the previous pairs' public keys, kept for theirs, go too
        revoked += tuple(sorted(set(pairs.public_keys().values()) - set(revoked)))
    revocation.succeeds(pending, revoked, pairs.public_keys().values(), name)  # UsageError
    return JwsTarget(tuple(signing), revoked, reason, every)


def revoke_pairs(
    run: Run, target: JwsTarget, force: bool = False, dry_run: bool = False
) -> ActionResult:
    """Revoke ``target``'s pairs in ``run.repository`` (the caller holds the lock, unless
    ``dry_run``); return the committed result (a dry run: the plan). Raise RepositoryError
    if the store is invalid."""
    keys = load(run)
    options = Options(force=force, dry_run=dry_run)
    if dry_run:
        return _preview(run, target, options)
    tidy_store(keys)
    steps = _Revoke(run, keys, options, target)
    return execute(Act(run, Action.REVOKE, run.clock(), forced=force), steps)


def finish_unfinished(run: Run) -> ActionResult | None:
    """Finish the JWS revocation under way, if any (its own ``--force`` kept); return its
    result (None: there is none)."""
    pending = load_state(run.config.state_dir, run.repository.name).revocation
    if pending is None:
        return None
    target = JwsTarget(pending.nodes, pending.digests, pending.reason)
    return revoke_pairs(run, target, pending.forced)


class _Revoke(_Jws):
    """The steps of a JWS revocation (``shell.Steps``): the rotation's, then the removal."""

    def __init__(self, run: Run, keys: Any, options: Options, target: JwsTarget) -> None:
        super().__init__(run, keys, options)
        self.target = target

    def before_gate(self, act: Act) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Journal the revocation first (a crash leaves it for the next run); then connect
        and read every node as a rotation does."""
        state = self.keys.state
        held, name = self.keys.pairs.public_keys().values(), self.run.repository.name
        pending = revocation.succeeds(state.revocation, self.target.digests, held, name)
        record = pending or Revocation(
            self.target.digests[0], self.target.reason, act.started, self.options.force,
            self.target.nodes, self.target.digests[1:],
        )  # fmt: skip
        self.record = record
        self.keys.state = revocation.begin(state, record)
        write_ahead(self.run, self.keys.state)
        return super().before_gate(act)

    def plan(self, act: Act, state: RepositoryState) -> dict[str, Any]:
        """Return the converge plan with a new pair for each revoked node; say what dies."""
        super().plan(act, state)
        # every node signing with a revoked key gets a new pair (an adopted fleet may share one)
        # (a revoked node that signs with a new key already, a run killed after its phase 2,
        # keeps it; a node no longer configured, or named by a damaged journal, is no one's)
        signing = jwsrevoke.still_signing(self.keys.pairs, self.record.digests)
        unsigned = [n for n in self.record.nodes if n not in self.keys.pairs.signing]
        renew = {*signing, *(n for n in unsigned if n in self.run.node_names)}
        self.decided = jwsrevoke.with_new_pairs(self.decided, renew)
        act.details["revoke"] = details(self.record, every=self.target.every)
        act.messages.append(jwsrevoke.dies(self.record.nodes, self.target.every))
        return {**self.decided.to_json(), "revoke": revoke_json(self.record)}

    def promote(self, act: Act, gated: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Install the new private keys as the gate allows, then remove the revoked public
        keys from every node at once; return the journal and every node."""
        state, nodes = super().promote(act, gated)
        revoked = self.record.digests
        signing = jwsrevoke.still_signing(self.keys.pairs, revoked)
        if signing and not self.record.forced:  # its tokens would be rejected everywhere
            act.outcome = Outcome.FAILED
            act.details["revoke"]["still_held_by"] = sorted(self.run.node_names)
            act.messages.append(_waiting(self.run, signing, gated))
            return state, nodes
        return self._remove(act, state)

    def _remove(
        self, act: Act, state: RepositoryState
    ) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Remove the revoked public keys: journal, every node (phase 2), store; read back."""
        keys, fleet, revoked = self.keys, self.fleet, self.record.digests
        names = jwsrevoke.revoked_names(keys.pairs, revoked)
        keys.pairs = jwsrevoke.forget(keys.pairs, revoked)
        keys.state = replace(state, jws=keys.pairs, generation=state.generation + 1)
        write_ahead(self.run, keys.state)  # no one's key from now: never pushed again
        fleet.inspect(expect(keys, retired=names))  # as verified after phase 2 (not read again)
        fleet.phase2(keys.scan.public, {})
        fleet.verify(expect(keys))
        keys.store.remove(public=names, private=())
        nodes = node_outcomes(fleet)
        state = checked(keys.state, nodes, self.run.node_names, self.run.clock(), self.clock)
        return self._settle(act, state, nodes), nodes

    def _settle(
        self, act: Act, state: RepositoryState, nodes: dict[str, NodeOutcome]
    ) -> RepositoryState:
        """Return the journal with the revocation finished if every node was verified."""
        done = "revoked: no node holds a revoked public key any more"
        return settle_revocation(self.run, act, state, nodes, done)


def _waiting(run: Run, signing: list[str], gated: Gate) -> str:
    """Return why the revoked keys stay (a node still signs with one), and what to do."""
    name = run.repository.name
    why = ", ".join(gated.unverified) or "the clock is not trusted"
    return (
        f"not revoked yet: {', '.join(signing)} still signs with its revoked key (its new private "
        f"key waits for the gate: {why}); the revoked public keys stay until it is installed. "
        f"Bring the nodes back and 'keysyncd sync --repo {name}' (or 'keysyncd revoke --repo "
        f"{name}') finishes it; 'keysyncd revoke --repo {name} --force' removes them now (tokens "
        "that node signs are rejected everywhere until it is synced). Rotation is blocked"
    )


def revoke_json(record: Revocation) -> dict[str, Any]:
    """Return the revocation as the plan shows it (digests only)."""
    return {"nodes": list(record.nodes), "revoked": list(record.digests), "steps": list(STEPS)}


def details(record: Revocation, every: bool = False) -> dict[str, Any]:
    """Return the report's ``details.revoke`` of a JWS revocation (``still_held_by`` filled in
    at the end)."""
    return {
        "reason": record.reason,
        "revoked": list(record.digests),
        "index": None,
        "role": "all" if every else "signing",
        "nodes": list(record.nodes),
        "tokens": {"issued_from_at": None, "issued_until_at": None},
        "still_held_by": [],
        "credentials_lost": False,
    }


def _preview(run: Run, target: JwsTarget, options: Options) -> ActionResult:
    """Return what the revocation would do and what dies, writing nothing."""
    keys = load(run)
    record = Revocation(target.digests[0], target.reason, run.clock(), options.force,
                        target.nodes, target.digests[1:])  # fmt: skip
    with Connections(run, observe_clock=False) as fleet:
        fleet.inspect(expect(keys))
        nodes = node_outcomes(fleet)
        preview, would = previews(fleet), predicted(fleet)
        plan = jwsrevoke.with_new_pairs(_plan(run, keys, options, fleet, True), target.nodes)
    messages = (jwsrevoke.dies(target.nodes, target.every), *STEPS)
    shown = {**plan.to_json(), "revoke": revoke_json(record)}
    name = run.repository.name
    return ActionResult(
        name, DRY_RUN, None, nodes, messages, preview=preview, would=would, plan=shown
    )
