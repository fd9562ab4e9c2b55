"""JWS key pairs: init, sync and rotate as one ``converge`` in the action shell (SPEC 9):
the plan made once -> phase 1 (every node gets every public key) -> the gate (all verified)
-> phase 2 (each node its own private key) -> read-back. A node whose private.pem is not
keysyncd's gets a new pair; no private key is kept once its node verified it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from keysyncd.actions.context import (
    DRY_RUN,
    ActionResult,
    Run,
    check_clock,
    node_outcomes,
    write_ahead,
)
from keysyncd.actions.jwsload import (
    Connections,
    Keys,
    expect,
    generate,
    load,
    refuse_if_any_node_holds_a_key,
    tidy_store,
)
from keysyncd.actions.jwswords import (
    Summary,
    algorithm_messages,
    details,
    init_messages,
    messages,
    preview_messages,
)
from keysyncd.actions.preview import predicted, previews
from keysyncd.actions.shell import Act, Gate, execute
from keysyncd.core import journal
from keysyncd.core import jws as model
from keysyncd.core.clock import ClockCheck
from keysyncd.core.journal import RepositoryState
from keysyncd.core.jwsconverge import ConvergePlan, ConvergeRequest
from keysyncd.core.kinds import JwsModel
from keysyncd.core.nodes import checked
from keysyncd.core.report import NodeOutcome
from keysyncd.core.vocabulary import GOOD, Action, Outcome, Trigger
from keysyncd.errors import KeysyncError, UsageError
from keysyncd.io.remote.jwsfleet import JwsFleet


@dataclass(frozen=True)
class Options:
    """What a converge may do: ``rotate`` (new pairs), ``force``, ``init``, ``dry_run``."""

    rotate: bool = False
    force: bool = False
    init: bool = False
    dry_run: bool = False
    node: str | None = None  # sync --node: refused (see converge)


def converge(run: Run, options: Options, action: Action) -> ActionResult:
    """Bring every node to the journal's pairs; raise KeysyncError (nothing changed) if refused."""
    started = run.clock()
    if options.node is not None:
        # a node's private key may only change once every node holds its public key, and
        # phase 2 of one node affects what every other node must hold: always the fleet
        raise UsageError(
            f"{run.repository.name}: sync --node does not apply to kind jws: every node is "
            f"synced together (run 'keysyncd sync --repo {run.repository.name}')"
        )
    keys = load(run)
    if options.init and (keys.pairs.signing or keys.pairs.next):
        raise KeysyncError(
            f"{run.repository.name}: refusing to initialise: keysyncd already "
            "holds key pairs for it (see 'keysyncd status')"
        )
    if options.dry_run:
        return _preview(run, keys, options)
    tidy_store(keys)  # only what the journal as loaded does not name (crash leftovers)
    return execute(Act(run, action, started), _Jws(run, keys, options))


OPERATOR = frozenset({Trigger.CLI, Trigger.SIGNAL})  # rotations an operator asked for now


def _plan(run: Run, keys: Keys, options: Options, fleet: JwsFleet, trusted: bool) -> ConvergePlan:
    """Return the plan of this run (the one planner, for the dry run and the real run)."""
    repository = run.repository
    request = ConvergeRequest(
        tuple(run.node_names),
        repository.algorithm,
        options.rotate,
        options.init,
        run.trigger in OPERATOR,
        trusted,
        repository.token_expiration + repository.allow_expired_window,
        run.clock(),
    )
    problems = {name: r.plan.private if r.plan else None for name, r in fleet.results.items()}
    planner = repository.key_kind.model_as(JwsModel).plan  # the one JWS planner
    return planner(keys.pairs, keys.scan.algorithms, request, problems)


class _Jws:
    """The steps of a JWS write action (``shell.Steps``): phase 1 before the gate, 2 after."""

    def __init__(self, run: Run, keys: Keys, options: Options) -> None:
        self.run, self.keys, self.options = run, keys, options
        self.fleet = run.connect(JwsFleet)

    def before_gate(self, act: Act) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Connect, judge the clock, read every node; return the journal recording it."""
        self.fleet.open()
        if self.options.init:
            refuse_if_any_node_holds_a_key(self.run, self.fleet)
        # the nodes' clocks were read on connect (init: no directory to read one in yet)
        quorum = not self.options.init
        act.clock = self.clock = check_clock(self.run, self.keys.state, self.fleet, quorum)
        act.rotating = self.options.rotate and self.clock.trusted
        self.fleet.inspect(expect(self.keys))
        nodes, now = node_outcomes(self.fleet), self.run.clock()
        return checked(self.keys.state, nodes, self.run.node_names, now, self.clock), nodes

    def plan(self, act: Act, state: RepositoryState) -> dict[str, Any]:
        """Return the plan (made once: ``keysyncd.core.jwsconverge``)."""
        self.decided = _plan(self.run, self.keys, self.options, self.fleet, self.clock.trusted)
        return self.decided.to_json()

    def gate(self, act: Act, state: RepositoryState) -> Gate:
        """Make the new pairs, run phase 1, read the nodes back; return the gate."""
        keys, plan, fleet = self.keys, self.decided, self.fleet
        keys.state = state
        keys.pairs = plan.pairs  # forgotten by the journal first, deleted from the store last
        # no new name is one a node's public directory already holds
        seen = {e.name for r in fleet.results.values() if r.view for e in r.view.public}
        generate(self.run, keys, sorted({*plan.new, *plan.rekey}), seen, plan.algorithm)
        fleet.replan(expect(keys, retired=plan.retire))
        fleet.phase1(keys.scan.public)
        fleet.reset()
        fleet.inspect(expect(keys, retired=plan.retire))
        return self._decide()

    def promote(self, act: Act, gated: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Run phase 2 on the gate's nodes, read every node back; return the journal, nodes."""
        run, keys, fleet = self.run, self.keys, self.fleet
        install = self.install if gated.promote else frozenset()
        if install and act.rotating:  # journaled with the rotation: a hook never reached blocks
            pending = journal.migration_pending(
                keys.state, run.repository.hooks.after_rotate, run.clock()
            )
            keys.state = replace(pending, jws=keys.pairs)
            write_ahead(run, keys.state)
        configured = run.repository.algorithm
        reachable = [n for n in install if fleet.results[n].error is None]  # phase 2's
        dropped = model.migration_drops(keys.pairs, reachable, keys.scan.algorithms, configured)
        fleet.replan(expect(keys, install, self.decided.retire, dropped))
        privates = {node: keys.scan.private[keys.pairs.next[node].public] for node in install}
        fleet.phase2(keys.scan.public, privates)
        fleet.verify(expect(keys, install, dropped=dropped))
        nodes = node_outcomes(fleet)
        done = [n for n in install if fleet.results[n].status in GOOD]
        summary = Summary(
            self.options, self.decided, self.clock, self.unverified, install, done, dropped,
            configured,
        )  # fmt: skip
        return _finish(run, keys, nodes, summary, act), nodes

    def regate(self, act: Act, gated: Gate) -> Gate:
        """Read every node again as the gate did (a hand may have taken a public key from a
        node, and phase 2 adds none); return the gate decided on what the nodes hold now
        (SPEC rule 1 for JWS: no private key once a node lacks a public key, unless forced)."""
        self.fleet.forget_views()
        self.fleet.inspect(expect(self.keys, retired=self.decided.retire))
        return self._decide() if gated.promote else gated

    def _decide(self) -> Gate:
        """Return the gate on the nodes as read: which may get their private key now."""
        self.unverified = _unverified(self.fleet, self.run.node_names)
        self.install = _gate(self.run, self.keys, self.unverified, self.options, self.clock)
        forced = bool(self.options.force and self.unverified)
        return Gate(bool(self.install), tuple(self.unverified), forced, not self.clock.trusted)

    def close(self) -> None:
        """Close every connection."""
        self.fleet.finish()


def _unverified(fleet: JwsFleet, names: list[str]) -> list[str]:
    """Return the nodes not verified holding every public key (with why)."""
    found = []
    for name in names:
        result = fleet.results[name]
        if result.error is not None:
            found.append(f"{name} ({result.error.reason})")
        elif result.plan is None or not result.plan.holds_every_public_key:
            found.append(f"{name} (public keys missing)")
    return found


def _gate(
    run: Run, keys: Keys, unverified: list[str], options: Options, clock: ClockCheck
) -> frozenset[str]:
    """Return the nodes that get their waiting private key now: all once every node holds
    every public key (rule 1), or forced; none while the daemon stops; with an untrusted
    clock only first pairs (they replace no key, so time no retirement: rule 10)."""
    if run.cancelled or (unverified and not options.force):
        return frozenset()
    if not clock.trusted:
        return frozenset(node for node in keys.pairs.next if node not in keys.pairs.signing)
    return frozenset(keys.pairs.next)  # phase 2 reaches only the nodes that answered


def _finish(
    run: Run, keys: Keys, nodes: dict[str, NodeOutcome], summary: Summary, act: Act
) -> RepositoryState:
    """Journal what phase 2 did, then remove the delivered private keys; return the journal."""
    now = run.clock()
    delivered = []
    for node in summary.installed:  # verified: its node signs with it from now
        delivered.append(keys.pairs.next[node].public)
        keys.pairs = model.installed(keys.pairs, node, now)
    # the former algorithm's keys no node signs with any more leave the journal now (a node
    # whose new pair failed to install keeps its own, which the next run removes)
    keys.pairs = model.without(keys.pairs, summary.dropped)
    gone = tuple(name for name in summary.dropped if name not in keys.pairs.public_keys())
    summary = replace(summary, dropped=gone)
    state = replace(keys.state, jws=keys.pairs, generation=keys.state.generation + 1)
    state = checked(state, nodes, run.node_names, now, summary.clock)
    # The journal records the pairs installed and the retired keys gone before their files
    # leave the store (keysyncd keeps no private key its node verified): a crash in between
    # leaves files the next run tidies away, never a journal naming keys the store lost.
    write_ahead(run, state)
    keys.store.remove(public=summary.plan.retire + gone, private=tuple(delivered))
    act.messages += messages(keys, summary) + algorithm_messages(keys, summary)
    if summary.options.init:
        act.messages += init_messages(run, nodes, summary)
    waiting = keys.pairs.next and not summary.install and summary.unverified
    if summary.options.rotate and (waiting or not summary.clock.trusted):
        act.outcome = act.outcome or Outcome.DEFERRED
    act.forced = bool(summary.options.force and summary.unverified)
    act.details["jws"] = details(keys, summary)
    return state


def _preview(run: Run, keys: Keys, options: Options) -> ActionResult:
    """Return what converge would do, writing nothing (the clock taken as trusted)."""
    with Connections(run, observe_clock=False) as fleet:
        if options.init:  # the same refusal as the real run, before anything else
            refuse_if_any_node_holds_a_key(run, fleet)
        fleet.inspect(expect(keys))
        nodes = node_outcomes(fleet)
        preview, would = previews(fleet), predicted(fleet)
        plan = _plan(run, keys, options, fleet, trusted=True)
    messages = preview_messages(run, plan)
    name = run.repository.name
    return ActionResult(
        name, DRY_RUN, None, nodes, messages, preview=preview, would=would, plan=plan.to_json()
    )
