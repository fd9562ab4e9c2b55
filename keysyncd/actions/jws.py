"""keystone's JWS key pairs (``kind: jws``): init, adopt, sync, rotate and verify.

Every write follows SPEC section 9: load (store, journal) -> decide (pairs to generate,
keys to retire) -> phase 1 (every node gets every public key) -> the gate (every node
verified holding all of them) -> phase 2 (each node gets its own private key; wrong entries
go) -> read-back -> commit. A node whose private.pem is not the one keysyncd installed gets
a new pair the same way: keysyncd never keeps a private key once its node verified it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from keysyncd.actions.context import DRY_RUN, ActionResult, Draft, Run, commit, write_ahead
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core import jws as model
from keysyncd.core.journal import RepositoryState
from keysyncd.core.jwskeys import generate_pair, public_of_private
from keysyncd.core.jwskeys import same_public_key as same
from keysyncd.core.jwsplan import JwsExpected, JwsNodePlan, JwsView
from keysyncd.core.keyring import digest_of
from keysyncd.core.nodes import checked
from keysyncd.core.report import NodeOutcome
from keysyncd.core.text import bounded
from keysyncd.core.vocabulary import GOOD, Action, Outcome
from keysyncd.errors import KeysyncError, RepositoryError, UsageError
from keysyncd.io.fanout import NodeResult
from keysyncd.io.ids import node_owner
from keysyncd.io.jwsfleet import JwsFleet
from keysyncd.io.jwsstore import JwsStore, StoreScan
from keysyncd.io.state import load_state

log = logging.getLogger(__name__)


def store_root(config: Config, repository: RepositoryConfig) -> Path:
    """Return where the controller keeps ``repository``'s keys: in state_dir (never readable
    by others, and not a directory keystone itself reads; ``path`` describes the nodes)."""
    return Path(config.state_dir) / "jws" / repository.name


def store_of(run: Run) -> JwsStore:
    """Return the controller's key store of ``run.repository``."""
    return JwsStore(store_root(run.config, run.repository), run.repository.algorithm)


@dataclass
class _Keys:
    """The store and the journal as loaded, and the JWS part as it is being changed."""

    store: JwsStore
    scan: StoreScan
    state: RepositoryState
    pairs: model.JwsState

    def save(self, run: Run) -> None:
        """Write the journal now (write-ahead: before the pairs reach any node)."""
        self.state = replace(self.state, jws=self.pairs, generation=self.state.generation + 1)
        write_ahead(run, self.state)


def _load(run: Run) -> _Keys:
    store = store_of(run)
    scan = store.scan()
    if scan.problems:
        raise RepositoryError("invalid repository: " + "; ".join(scan.problems))
    state = load_state(run.config.state_dir, run.repository.name)
    pairs = state.jws or model.JwsState()
    missing = [p.public for p in pairs.next.values() if p.public not in scan.private]
    if missing:  # generated, but the private key never reached the store: never used
        pairs = model.dropped(pairs, [p.node for p in pairs.next.values() if p.public in missing])
    lost = sorted(set(pairs.public_keys()) - set(scan.public))
    if lost:
        raise RepositoryError(
            f"invalid repository: the JWS store {store.public_dir} lost public keys the nodes "
            f"need: {bounded(lost)}; restore them from a node or re-adopt"
        )
    _check_against_journal(store, scan, pairs)
    return _Keys(store, scan, state, pairs)


def _check_against_journal(store: JwsStore, scan: StoreScan, pairs: model.JwsState) -> None:
    """Raise RepositoryError if a key file in the store is not the one the journal recorded:
    whoever changed it could make every node trust their key (or install a key no node can
    validate). Nothing reaches a node from a store that does not match."""
    changed = [
        name
        for name, digest in pairs.public_keys().items()
        if digest_of(scan.public[name]) != digest
    ]
    for pair in pairs.next.values():
        private = scan.private[pair.public]
        public = public_of_private(private, store.algorithm)
        if (
            digest_of(private) != pair.private_digest
            or public is None
            or not same(scan.public[pair.public], public)
        ):
            changed.append(f"private/{pair.public}")
    if changed:
        raise RepositoryError(
            f"invalid repository: the JWS store {store.root} holds keys other than those the "
            f"journal recorded: {bounded(sorted(changed))}; restore them or re-adopt"
        )


def _expect(
    keys: _Keys, installing: frozenset[str] = frozenset(), retired: Iterable[str] = ()
) -> JwsFleetExpect:
    return JwsFleetExpect(keys.pairs, installing, frozenset(retired))


@dataclass(frozen=True)
class JwsFleetExpect:
    """What each node must hold: every public key, and its private key (the waiting one for
    nodes getting theirs in this run)."""

    pairs: model.JwsState
    installing: frozenset[str]
    retired: frozenset[str] = frozenset()

    def __call__(self, node: str) -> JwsExpected:
        waiting = self.pairs.next.get(node)
        if node in self.installing and waiting is not None:
            current = self.pairs.private_digest(node)
            return JwsExpected(
                self.pairs.public_keys(), waiting.private_digest, self.retired, current
            )
        return JwsExpected(self.pairs.public_keys(), self.pairs.private_digest(node), self.retired)


def _generate(run: Run, keys: _Keys, nodes: list[str], seen: Iterable[str] = ()) -> None:
    """Make a new pair for each of ``nodes``: into the store (private first), then into the
    journal, before anything reaches a node. New names are in no journal, store or node
    listing (``seen``): a name that is taken would replace someone's key."""
    if not nodes:
        return
    publics, privates, pairs = {}, {}, []
    taken = {*keys.scan.public, *keys.scan.private, *seen}
    for node in nodes:
        serial = model.next_serial(keys.pairs, node, taken)
        taken.add(model.public_name(node, serial))
        private_pem, public_pem = generate_pair(run.repository.algorithm)
        name = model.public_name(node, serial)
        publics[name], privates[name] = public_pem, private_pem
        pairs.append(
            model.Pair(
                node, serial, name, digest_of(public_pem), digest_of(private_pem), run.clock()
            )
        )
    keys.store.write(publics, privates)
    keys.pairs = model.with_next(keys.pairs, pairs)
    keys.scan.public.update(publics)
    keys.scan.private.update(privates)
    keys.save(run)


def _retire(run: Run, keys: _Keys) -> tuple[str, ...]:
    """Forget old public keys nobody can need any more and nodes no longer configured; the
    nodes delete them in phase 2. Return the retired names."""
    now = run.clock()
    retention = run.repository.token_expiration + run.repository.allow_expired_window
    keys.pairs = model.removed_nodes(keys.pairs, run.node_names, now)
    due = model.plan_retirement(keys.pairs, retention, now)
    keys.pairs = model.without(keys.pairs, due.retire)
    return due.retire


def _tidy_store(keys: _Keys) -> None:
    """Delete what the journal no longer names (a crash leftover, retired keys)."""
    keys.store.remove_temp_files()
    wanted = set(keys.pairs.public_keys())
    waiting = {pair.public for pair in keys.pairs.next.values()}
    keys.store.remove(
        public=tuple(sorted(set(keys.scan.public) - wanted)),
        private=tuple(sorted(set(keys.scan.private) - waiting)),
    )


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
    keys = _load(run)
    if options.init and (keys.pairs.signing or keys.pairs.next):
        raise KeysyncError(
            f"{run.repository.name}: refusing to initialise: keysyncd already "
            "holds key pairs for it (see 'keysyncd status')"
        )
    if options.dry_run:
        return _preview(run, keys, options)
    _tidy_store(keys)  # only what the journal as loaded does not name (crash leftovers)
    retired = _retire(run, keys)  # forgotten by the journal first, deleted from the store last
    with _fleet(run) as fleet:
        if options.init:
            _refuse_if_any_node_holds_a_key(run, fleet)
        new = model.needing_pairs(keys.pairs, run.node_names, options.rotate or options.init)
        fleet.inspect(_expect(keys, retired=retired))
        drifted = sorted(
            name
            for name, result in fleet.results.items()
            if result.plan and result.plan.private and name not in keys.pairs.next
            if name not in new
        )
        # a private.pem that is not ours gets a new pair (no repair); no new name is one a
        # node's public directory already holds
        seen = {e.name for r in fleet.results.values() if r.view for e in r.view.public}
        _generate(run, keys, sorted({*new, *drifted}), seen)
        fleet.replan(_expect(keys, retired=retired))
        fleet.phase1(keys.scan.public)
        fleet.reset()
        fleet.inspect(_expect(keys, retired=retired))
        unverified = _unverified(fleet, run.node_names)
        install = _gate(run, keys, unverified, options)
        fleet.replan(_expect(keys, install, retired))
        privates = {node: keys.scan.private[keys.pairs.next[node].public] for node in install}
        fleet.phase2(keys.scan.public, privates)
        fleet.verify(_expect(keys, install))
        nodes = {name: result.outcome() for name, result in fleet.results.items()}
        done = [n for n in install if fleet.results[n].status in GOOD]
    return _finish(
        run,
        keys,
        nodes,
        _Summary(action, started, options, unverified, install, done, retired, drifted),
    )


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


def _gate(run: Run, keys: _Keys, unverified: list[str], options: Options) -> frozenset[str]:
    """Return the nodes that get their waiting private key now: all of them once every node
    holds every public key (SPEC rule 1 for JWS); with --force, those reachable; none while
    the daemon stops."""
    if run.cancelled or (unverified and not options.force):
        return frozenset()
    return frozenset(keys.pairs.next)  # phase 2 reaches only the nodes that answered


def _finish(
    run: Run, keys: _Keys, nodes: dict[str, NodeOutcome], summary: _Summary
) -> ActionResult:
    now = run.clock()
    delivered = []
    for node in summary.installed:  # verified: its node signs with it from now
        delivered.append(keys.pairs.next[node].public)
        keys.pairs = model.installed(keys.pairs, node, now)
    state = replace(keys.state, jws=keys.pairs, generation=keys.state.generation + 1)
    state = checked(state, nodes, run.node_names, now)
    # The journal records the pairs installed and the retired keys gone before their files
    # leave the store (keysyncd keeps no private key its node verified): a crash in between
    # leaves files the next run tidies away, never a journal naming keys the store lost.
    write_ahead(run, state)
    keys.store.remove(public=summary.retired, private=tuple(delivered))
    messages = _messages(keys, summary)
    outcome = None
    if keys.pairs.next and not summary.install and summary.unverified:
        outcome = Outcome.DEFERRED if summary.options.rotate else None
    draft = Draft(
        summary.action,
        summary.started,
        nodes,
        outcome,
        bool(summary.options.force and summary.unverified),
        tuple(messages),
        {"jws": _details(keys, summary)},
    )
    return commit(run, state, draft)


def _messages(keys: _Keys, summary: _Summary) -> list[str]:
    messages = []
    if summary.installed:
        messages.append("installed new private keys on " + bounded(sorted(summary.installed)))
    if keys.pairs.next and summary.unverified and not summary.install:
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
    if summary.rekeyed:
        messages.append(
            "private.pem was not keysyncd's on "
            + bounded(summary.rekeyed)
            + ": a new pair replaces it"
        )
    if summary.retired:
        messages.append(
            f"retired public keys {bounded(list(summary.retired))}: no live token can need them"
        )
    return messages


def _details(keys: _Keys, summary: _Summary) -> dict[str, object]:
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
            f"{run.repository.name}: refusing to initialise: node(s) {', '.join(holding)} "
            "already hold JWS keys; use 'keysyncd adopt --from NODE' to take them over"
        )
    fleet.reset()


class _fleet:
    """Connections to every node of ``run`` (or to ``only``), closed afterwards."""

    def __init__(self, run: Run, only: str | None = None) -> None:
        nodes = [run.config.node(only)] if only else list(run.config.nodes)
        self.fleet = JwsFleet(
            run.repository,
            nodes,
            run.config.ssh,
            node_owner(run.repository),
            run.progress,
            run.cancel,
        )

    def __enter__(self) -> JwsFleet:
        self.fleet.open()
        return self.fleet

    def __exit__(self, *exc: object) -> None:
        self.fleet.finish()


def _preview(run: Run, keys: _Keys, options: Options) -> ActionResult:
    """What converge would do, reading the nodes and writing nothing."""
    new = model.needing_pairs(keys.pairs, run.node_names, options.rotate or options.init)
    retention = run.repository.token_expiration + run.repository.allow_expired_window
    due = model.plan_retirement(keys.pairs, retention, run.clock())
    with _fleet(run) as fleet:
        fleet.inspect(_expect(keys))
        nodes = {name: result.outcome() for name, result in fleet.results.items()}
        preview = {
            n: (r.plan.changes() if r.plan else {"error": r.error.detail if r.error else "?"})
            for n, r in fleet.results.items()
        }
    messages = []
    if new:
        messages.append("would make new key pairs for " + bounded(new))
    if due.retire:
        messages.append("would retire public keys " + bounded(list(due.retire)))
    return ActionResult(run.repository.name, DRY_RUN, None, nodes, tuple(messages), preview=preview)


def verify(run: Run, node: str | None = None) -> ActionResult:
    """Read every node (or one) and compare it with the journal; change nothing anywhere."""
    started = run.clock()
    keys = _load(run)
    with _fleet(run, node) as fleet:
        fleet.inspect(_expect(keys))
        nodes = {name: result.outcome() for name, result in fleet.results.items()}
    state = checked(keys.state, nodes, run.node_names, run.clock())
    return commit(run, state, Draft(Action.VERIFY, started, nodes))


def adopt(run: Run, source: str) -> list[str]:
    """Take over the key pairs the nodes already use: the public keys in node ``source``'s
    public directory, and each node's private key digest (no private key moves). Return the
    public key names taken over. Raise KeysyncError (nothing written) if keysyncd already
    holds pairs, or a node's private key has no public key there."""
    keys = _load(run)
    if keys.pairs.signing or keys.pairs.next:
        raise KeysyncError(
            f"{run.repository.name}: refusing to adopt: keysyncd already holds key pairs for it"
        )
    with _fleet(run) as fleet:
        publics, pairs = _adoptable(run, fleet, source)
    now = run.clock()
    signing = {pair.node: pair for pair in pairs}
    mine = {pair.public for pair in pairs}
    # public keys no node signs with: someone's old ones; kept their full retention from now
    retiring = {
        name: model.Retiring("", digest_of(content), now)
        for name, content in publics.items()
        if name not in mine
    }
    keys.store.write(publics, {})
    serials = model.adopted_serials(publics, run.node_names)  # new names never reuse these
    keys.pairs = model.JwsState(signing, {}, retiring, serials)
    keys.save(run)
    message = (
        f"adopted {len(publics)} public keys from node {source} and the private key "
        f"digests of {len(signing)} nodes"
    )
    commit(run, keys.state, Draft(Action.ADOPT, now, messages=(message,)))
    return sorted(publics)


def _adoptable(run: Run, fleet: JwsFleet, source: str) -> tuple[dict[str, bytes], list[model.Pair]]:
    """Return the public keys of ``source`` and each node's pair as it is now."""
    fleet.inspect(lambda node: JwsExpected({}, None))
    failed = {n: r.error.detail for n, r in fleet.results.items() if r.error is not None}
    if failed:
        raise KeysyncError(
            "cannot adopt: not every node answered: "
            + ", ".join(f"{n} ({why})" for n, why in sorted(failed.items()))
        )
    publics = fleet.public_contents(source)
    pairs = []
    for node in fleet.results:
        public, digest = fleet.private_public(node)
        match = sorted(name for name, pem in publics.items() if same(pem, public))
        if not match:
            raise KeysyncError(
                f"cannot adopt: node {node}'s private key has no public key in "
                f"node {source}'s public directory"
            )
        pair = model.Pair(node, 0, match[0], digest_of(publics[match[0]]), digest, run.clock())
        pairs.append(pair)
    return publics, pairs


def _previewed(result: NodeResult[JwsView, JwsNodePlan]) -> dict[str, object]:
    if result.plan is not None:
        return result.plan.changes()
    return {"error": result.error.detail if result.error else "not read"}
