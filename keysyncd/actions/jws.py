"""keystone's JWS key pairs (``kind: jws``): init, sync and rotate (``converge``); verify and
adopt are in ``keysyncd.actions.jwsread``, loading and deciding in ``keysyncd.actions.jwsload``.

Every write follows SPEC section 9: load (store, journal) -> decide (pairs to generate,
keys to retire) -> phase 1 (every node gets every public key) -> the gate (every node
verified holding all of them) -> phase 2 (each node gets its own private key; wrong entries
go) -> read-back -> commit. A node whose private.pem is not the one keysyncd installed gets
a new pair the same way: keysyncd never keeps a private key once its node verified it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from keysyncd.actions.context import (
    DRY_RUN,
    ActionResult,
    Draft,
    Run,
    check_clock,
    commit,
    write_ahead,
)
from keysyncd.actions.jwsload import (
    Connections,
    Keys,
    expect,
    generate,
    load,
    retire,
    store_of,
    tidy_store,
)
from keysyncd.actions.jwsread import adopt, verify
from keysyncd.core import jws as model
from keysyncd.core.clock import ClockCheck
from keysyncd.core.jwsplan import WRONG_MODE, JwsExpected
from keysyncd.core.nodes import checked
from keysyncd.core.report import NodeOutcome
from keysyncd.core.text import bounded, named, plural, printable
from keysyncd.core.vocabulary import GOOD, Action, Outcome, Trigger, outcome_after_push
from keysyncd.errors import KeysyncError, UsageError
from keysyncd.io.local.jwsstore import store_root
from keysyncd.io.local.occupied import jws_private_file
from keysyncd.io.remote.jwsfleet import JwsFleet
from keysyncd.io.remote.occupied import refuse_occupied_nodes

__all__ = ["Options", "adopt", "converge", "store_of", "store_root", "verify"]

log = logging.getLogger(__name__)
MAX_NAMED = 5  # failed nodes named one by one in an init's messages


@dataclass(frozen=True)
class Options:
    """What a converge run may do: ``rotate`` (a new pair for every node), ``force`` (past
    unverified nodes), ``init`` (refuse if anything exists), ``dry_run``."""

    rotate: bool = False
    force: bool = False
    init: bool = False
    dry_run: bool = False
    node: str | None = None  # sync --node: refused (see converge)


def converge(run: Run, options: Options, action: Action) -> ActionResult:
    """Bring every node to the journal's key pairs (rotating first if asked): see the module
    docstring. Raise KeysyncError (nothing changed) for an invalid store or a refusal."""
    started = run.clock()
    if options.node is not None:
        # a node's private key may only change once every node holds its public key, and
        # phase 2 of one node affects what every other node must hold: always the fleet
        raise UsageError(
            f"{run.repository.name}: sync --node does not apply to kind jws: every node is "
            "synced together (run 'keysyncd sync --repo "
            f"{run.repository.name}')"
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
    with Connections(run) as fleet:
        if options.init:
            _refuse_if_any_node_holds_a_key(run, fleet)
        # the nodes' clocks were read on connect (init: no directory to read one in yet)
        clock = check_clock(run, keys.state, fleet, quorum=not options.init)
        # forgotten by the journal first, deleted from the store last
        retired = retire(run, keys, clock)
        rotating = options.rotate and clock.trusted  # an untrusted clock rotates nothing
        algorithm, former = _algorithm(run, keys, rotating)
        new = model.needing_pairs(keys.pairs, run.node_names, rotating or options.init)
        fleet.inspect(expect(keys, retired=retired))
        drifted = sorted(
            name
            for name, result in fleet.results.items()
            if result.plan and result.plan.private and name not in keys.pairs.next
            if name not in new
        )
        exposed = [n for n in drifted if _exposed(fleet, n)]
        # a private.pem that is not ours gets a new pair (no repair); no new name is one a
        # node's public directory already holds
        seen = {e.name for r in fleet.results.values() if r.view for e in r.view.public}
        generate(run, keys, sorted({*new, *drifted}), seen, algorithm)
        fleet.replan(expect(keys, retired=retired))
        fleet.phase1(keys.scan.public)
        fleet.reset()
        fleet.inspect(expect(keys, retired=retired))
        unverified = _unverified(fleet, run.node_names)
        install = _gate(run, keys, unverified, options, clock)
        configured = run.repository.algorithm
        reachable = [n for n in install if fleet.results[n].error is None]  # phase 2's
        dropped = model.migration_drops(keys.pairs, reachable, keys.scan.algorithms, configured)
        fleet.replan(expect(keys, install, retired, dropped))
        privates = {node: keys.scan.private[keys.pairs.next[node].public] for node in install}
        fleet.phase2(keys.scan.public, privates)
        fleet.verify(expect(keys, install, dropped=dropped))
        nodes = {name: result.outcome() for name, result in fleet.results.items()}
        done = [n for n in install if fleet.results[n].status in GOOD]
    summary = _Summary(
        action, started, options, unverified, install, done, retired, drifted, clock, exposed
    )
    summary = replace(summary, dropped=dropped, former=former, algorithm=configured)
    return _finish(run, keys, nodes, summary)


OPERATOR = frozenset({Trigger.CLI, Trigger.SIGNAL})  # rotations an operator asked for now


def _algorithm(run: Run, keys: Keys, rotating: bool) -> tuple[str, str]:
    """Return (the algorithm of the pairs made in this run, the former algorithm of the
    journal's keys: "" when every key is of the configured one).

    After a change of ``algorithm`` the nodes keep signing with the former one until a
    rotation an operator asks for (a scheduled one keeps it: the change stops every token
    until keystone is reconfigured); that rotation makes every pair anew, the waiting ones
    of the former algorithm too. Outside it a new pair is of the algorithm the nodes sign
    with: one of another would make keystone fail tokens (see keysyncd.core.jws)."""
    configured = run.repository.algorithm
    former = model.former_algorithms(keys.pairs, keys.scan.algorithms, configured)
    if not former:
        return configured, ""
    if rotating and run.trigger in OPERATOR:
        stale = set(keys.stale(configured))
        waiting = [node for node, pair in keys.pairs.next.items() if pair.public in stale]
        keys.pairs = model.dropped(keys.pairs, waiting)  # never installed: never used
        return configured, former
    return keys.signing_algorithm(configured), former


def _exposed(fleet: JwsFleet, name: str) -> bool:
    """Return True if ``name``'s private.pem held the right key, but others could read it
    (keystone-manage writes it 0644): it gets a new pair all the same."""
    plan = fleet.results[name].plan
    return plan is not None and plan.private is not None and plan.private.startswith(WRONG_MODE)


@dataclass(frozen=True)
class _Summary:
    action: Action
    started: float
    options: Options
    unverified: list[str]
    install: frozenset[str]
    installed: list[str]
    retired: tuple[str, ...]
    rekeyed: list[str]
    clock: ClockCheck
    exposed: list[str]  # of rekeyed: the right key, but open to others (mode or owner)
    dropped: tuple[str, ...] = ()  # public keys of the former algorithm removed now
    former: str = ""  # the former algorithm of the journal's keys ("": none)
    algorithm: str = ""  # the configured one


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
    """Return the nodes that get their waiting private key now: all of them once every node
    holds every public key (SPEC rule 1 for JWS); with --force, those reachable; none while
    the daemon stops. With an untrusted clock only a node's first pair (it replaces no key,
    so it times no retirement: SPEC rule 10)."""
    if run.cancelled or (unverified and not options.force):
        return frozenset()
    if not clock.trusted:
        return frozenset(node for node in keys.pairs.next if node not in keys.pairs.signing)
    return frozenset(keys.pairs.next)  # phase 2 reaches only the nodes that answered


def _finish(run: Run, keys: Keys, nodes: dict[str, NodeOutcome], summary: _Summary) -> ActionResult:
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
    keys.store.remove(public=summary.retired + gone, private=tuple(delivered))
    messages = _messages(keys, summary) + _algorithm_messages(keys, summary)
    if summary.options.init:
        messages += _init_messages(run, nodes, summary)
    outcome = None
    if keys.pairs.next and not summary.install and summary.unverified:
        outcome = Outcome.DEFERRED if summary.options.rotate else None
    if summary.options.rotate and not summary.clock.trusted:
        outcome = Outcome.DEFERRED
    draft = Draft(
        summary.action,
        summary.started,
        nodes,
        outcome,
        bool(summary.options.force and summary.unverified),
        tuple(messages),
        {"jws": _details(keys, summary)},
        summary.clock,
    )
    return commit(run, state, draft)


def _messages(keys: Keys, summary: _Summary) -> list[str]:
    messages = []
    if summary.options.rotate and not summary.clock.trusted:
        messages.append(
            "deferred: no new key pair and no private key replaced: the controller's clock "
            "is not trusted (see below)"
        )
    if summary.installed:
        messages.append("installed new private keys on " + bounded(sorted(summary.installed)))
    deferred = bool(keys.pairs.next and summary.unverified and not summary.install)
    if deferred and summary.options.init:
        pass  # an init says it node by node (_init_messages)
    elif deferred:
        waiting = bounded(sorted(keys.pairs.next))
        messages.append(
            f"deferred: no private key changed anywhere; not every node holds the "
            f"new public keys: {', '.join(summary.unverified)} (waiting: {waiting})"
        )
    elif summary.unverified and summary.options.force:
        messages.append(
            "FORCED: private keys installed although these nodes were not "
            "verified: " + ", ".join(summary.unverified)
        )
    foreign = [name for name in summary.rekeyed if name not in summary.exposed]
    if foreign:
        messages.append(
            "private.pem was not keysyncd's on " + bounded(foreign) + ": a new pair replaces it"
        )
    if summary.exposed:
        messages.append(
            "private.pem had a wrong mode or owner (others may have read it) on "
            + bounded(summary.exposed)
            + ": a new pair replaces it"
        )
    if summary.retired:
        messages.append(
            f"retired public keys {bounded(list(summary.retired))}: no live token can need them"
        )
    return messages


def _algorithm_messages(keys: Keys, summary: _Summary) -> list[str]:
    """Return what this run did about a change of algorithm, and what is still to do."""
    if not summary.former:
        return []
    former, configured = summary.former, summary.algorithm
    lines = []
    if summary.dropped:
        lines.append(
            f"algorithm changed {former} -> {configured}: the {former} public keys "
            f"{bounded(list(summary.dropped))} left every node; tokens signed with {former} "
            f"are no longer valid: keystone must run with [jwt_tokens] jws_algorithm = "
            f"{configured} on every node now"
        )
    left = sorted(
        node
        for node, pair in keys.pairs.signing.items()
        if keys.scan.algorithms.get(pair.public, configured) != configured
    )
    if left and keys.pairs.next:
        lines.append(
            f"algorithm change {former} -> {configured} under way: still signing with "
            f"{former} on {bounded(left)}; the {former} public keys stay until every node "
            f"has its {configured} pair installed (keystone fails tokens while both are there)"
        )
    elif left:
        lines.append(model.migration_notice(former, configured))
    return lines


def _init_messages(run: Run, nodes: dict[str, NodeOutcome], summary: _Summary) -> list[str]:
    """Return what an init did on each node, unless it did everything (then the command says
    so): which nodes sign with their new pair, which hold the public keys only, which failed
    and why, and what to do next. Nothing here claims a node that failed."""
    names = run.node_names
    if set(summary.installed) == set(names):
        return []
    failed = [name for name in names if nodes.get(name) and nodes[name].error is not None]
    signing = sorted(summary.installed)
    waiting = [name for name in names if name not in signing and name not in failed]
    lines = [
        f"init failed on {name}: {printable(nodes[name].error or '', 300)}"
        for name in failed[:MAX_NAMED]
    ]
    if len(failed) > MAX_NAMED:
        more = plural(len(failed) - MAX_NAMED, "more node")
        lines.append(f"init failed on {more} (see below)")
    if signing:
        lines.append("a key pair is installed on " + bounded(signing))
    if waiting:
        lines.append(
            "no private key installed on "
            + bounded(waiting)
            + ": none is, until every node holds every node's public key"
        )
    lines.append(
        "the new key pairs wait in the controller's store: once the failed nodes are fixed, "
        f"'keysyncd sync --repo {run.repository.name}' installs them"
    )
    return lines


def _details(keys: Keys, summary: _Summary) -> dict[str, object]:
    return {
        "public": keys.pairs.public_keys(),
        "signing": {n: p.public for n, p in sorted(keys.pairs.signing.items())},
        "waiting": {n: p.public for n, p in sorted(keys.pairs.next.items())},
        "retiring": {n: k.stopped_at for n, k in sorted(keys.pairs.retiring.items())},
        "installed": sorted(summary.installed),
        "retired": list(summary.retired),
    }


def _refuse_if_any_node_holds_a_key(run: Run, fleet: JwsFleet) -> None:
    fleet.inspect(lambda node: JwsExpected({}, None))
    holding = sorted(
        name
        for name, result in fleet.results.items()
        if result.view and (result.view.private_key is not None or result.view.public)
    )
    if holding:
        raise KeysyncError(
            f"{run.repository.name}: refusing to initialise: {named('node', holding)} "
            f"already {'holds' if len(holding) == 1 else 'hold'} JWS keys; "
            "use 'keysyncd adopt --from NODE' to take them over"
        )
    refuse_occupied_nodes(fleet, jws_private_file)
    fleet.reset()


def _preview(run: Run, keys: Keys, options: Options) -> ActionResult:
    """What converge would do, reading the nodes and writing nothing."""
    new = model.needing_pairs(keys.pairs, run.node_names, options.rotate or options.init)
    retention = run.repository.token_expiration + run.repository.allow_expired_window
    due = model.plan_retirement(keys.pairs, retention, run.clock())
    with Connections(run, observe_clock=False) as fleet:
        if options.init:  # the same refusal as the real run, before anything else
            _refuse_if_any_node_holds_a_key(run, fleet)
        fleet.inspect(expect(keys))
        nodes = {name: result.outcome() for name, result in fleet.results.items()}
        fixable = {n: not (r.plan and r.plan.unfixable) for n, r in fleet.results.items()}
        preview = {
            n: (r.plan.changes() if r.plan else {"error": r.error.detail if r.error else "?"})
            for n, r in fleet.results.items()
        }
        drifted = sorted(
            name
            for name, result in fleet.results.items()
            if result.plan and result.plan.private and name not in keys.pairs.next
            if name not in new
        )
    messages = []
    if new:
        messages.append("would make new key pairs for " + bounded(new))
    if drifted:
        messages.append(
            "private.pem is not keysyncd's on " + bounded(drifted) + ": would make new pairs"
        )
    if due.retire:
        messages.append("would retire public keys " + bounded(list(due.retire)))
    configured = run.repository.algorithm
    if former := model.former_algorithms(keys.pairs, keys.scan.algorithms, configured):
        messages.append(
            f"would give every node a {configured} pair and remove the {former} public keys: "
            f"every token signed with {former} becomes invalid"
            if options.rotate and run.trigger in OPERATOR
            else model.migration_notice(former, configured)
        )
    # a node that differs would be brought in line; one that failed fails the real run too
    would = outcome_after_push((node.status, fixable[name]) for name, node in nodes.items())
    return ActionResult(
        run.repository.name, DRY_RUN, None, nodes, tuple(messages), preview=preview, would=would
    )
