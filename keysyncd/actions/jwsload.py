"""The JWS kind's store and journal checked against each other (``load``), what every node
must hold (``expect``), new pairs (``generate``) and the connections to the nodes."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

from keysyncd.actions.context import Run, write_ahead
from keysyncd.core import jws as model
from keysyncd.core.journal import RepositoryState
from keysyncd.core.jwskeys import generate_pair, public_of_private
from keysyncd.core.jwskeys import same_public_key as same
from keysyncd.core.jwsplan import JwsExpected
from keysyncd.core.keyring import digest_of
from keysyncd.core.text import bounded, named
from keysyncd.errors import KeysyncError, RepositoryError
from keysyncd.io.local.jwsstore import JwsStore, StoreScan, store_root
from keysyncd.io.local.repolinks import jws_private_file
from keysyncd.io.local.state import load_state
from keysyncd.io.remote.fleet import refuse_occupied_nodes
from keysyncd.io.remote.jwsfleet import JwsFleet


def store_of(run: Run) -> JwsStore:
    """Return the controller's key store of ``run.repository``."""
    return JwsStore(store_root(run.config, run.repository), run.repository.algorithm)


@dataclass
class Keys:
    """The store and the journal as loaded, and the JWS part as it is being changed."""

    store: JwsStore
    scan: StoreScan
    state: RepositoryState
    pairs: model.JwsState

    def save(self, run: Run) -> None:
        """Write the journal now (write-ahead: before the pairs reach any node)."""
        self.state = replace(self.state, jws=self.pairs, generation=self.state.generation + 1)
        write_ahead(run, self.state)


def load(run: Run) -> Keys:
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
    return Keys(store, scan, state, pairs)


def _check_against_journal(store: JwsStore, scan: StoreScan, pairs: model.JwsState) -> None:
    """Raise RepositoryError if a store file is not the journal's (nodes would trust it)."""
    changed = [
        n for n, digest in pairs.public_keys().items() if digest_of(scan.public[n]) != digest
    ]
    for pair in pairs.next.values():
        private = scan.private[pair.public]
        # a pair waiting since before a change of algorithm is of the former one
        public = public_of_private(private, scan.algorithms.get(pair.public, store.algorithm))
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


def expect(
    keys: Keys,
    installing: frozenset[str] = frozenset(),
    retired: Iterable[str] = (),
    dropped: Iterable[str] = (),
) -> JwsFleetExpect:
    return JwsFleetExpect(keys.pairs, installing, frozenset(retired), frozenset(dropped))


@dataclass(frozen=True)
class JwsFleetExpect:
    """What each node must hold: every public key and its private key (the waiting one when
    ``installing``); ``dropped``: a former algorithm's public keys going in this run."""

    pairs: model.JwsState
    installing: frozenset[str]
    retired: frozenset[str] = frozenset()
    dropped: frozenset[str] = frozenset()

    def __call__(self, node: str) -> JwsExpected:
        public = {k: v for k, v in self.pairs.public_keys().items() if k not in self.dropped}
        retired = self.retired | self.dropped
        waiting = self.pairs.next.get(node)
        if node in self.installing and waiting is not None:
            current = self.pairs.private_digest(node)
            return JwsExpected(public, waiting.private_digest, retired, current)
        return JwsExpected(public, self.pairs.private_digest(node), retired)


def generate(
    run: Run, keys: Keys, nodes: list[str], seen: Iterable[str] = (), algorithm: str = ""
) -> None:
    """Make a new pair for each of ``nodes``: into the store, then the journal, before any
    node sees it; no name is one taken (``seen``: on a node), which would replace a key."""
    if not nodes:
        return
    publics, privates, pairs = {}, {}, []
    taken = {*keys.scan.public, *keys.scan.private, *seen}
    algorithm = algorithm or run.repository.algorithm
    for node in nodes:
        serial = model.next_serial(keys.pairs, node, taken)
        name = model.public_name(node, serial)
        taken.add(name)
        private_pem, public_pem = generate_pair(algorithm)
        publics[name], privates[name] = public_pem, private_pem
        digests = digest_of(public_pem), digest_of(private_pem)
        pairs.append(model.Pair(node, serial, name, *digests, run.clock()))
    keys.store.write(publics, privates)
    keys.pairs = model.with_next(keys.pairs, pairs)
    keys.scan.algorithms.update(dict.fromkeys(publics, algorithm))
    keys.scan.public.update(publics)
    keys.scan.private.update(privates)
    keys.save(run)


def tidy_store(keys: Keys) -> None:
    """Delete what the journal no longer names (a crash leftover, retired keys)."""
    keys.store.remove_temp_files()
    wanted = set(keys.pairs.public_keys())
    waiting = {pair.public for pair in keys.pairs.next.values()}
    keys.store.remove(
        public=tuple(sorted(set(keys.scan.public) - wanted)),
        private=tuple(sorted(set(keys.scan.private) - waiting)),
    )


class Connections:
    """Connections to every node of ``run`` (or ``only``), closed afterwards."""

    def __init__(
        self, run: Run, only: str | Collection[str] | None = None, observe_clock: bool = True
    ) -> None:
        self.fleet = run.connect(JwsFleet, only, observe_clock)

    def __enter__(self) -> JwsFleet:
        self.fleet.open()
        return self.fleet

    def __exit__(self, *exc: object) -> None:
        self.fleet.finish()


def refuse_if_any_node_holds_a_key(run: Run, fleet: JwsFleet) -> None:
    """Raise KeysyncError naming nodes holding JWS keys or other files; else forget the reads."""
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
