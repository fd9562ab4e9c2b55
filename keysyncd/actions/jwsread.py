"""The JWS kind's actions that read the nodes before anything else: ``verify`` (compare,
change nothing) and ``adopt`` (take over the pairs the nodes already use)."""

from __future__ import annotations

from contextlib import ExitStack
from functools import partial

from keysyncd.actions import readonly
from keysyncd.actions.context import Run, check_clock
from keysyncd.actions.jwsdrift import JwsReads
from keysyncd.actions.jwsload import Connections, load
from keysyncd.actions.shell import Act
from keysyncd.core import jws as model
from keysyncd.core.adoption import Adopted, PublicJudgement, judge_publics, refused_publics
from keysyncd.core.journal import RepositoryState
from keysyncd.core.jwskeys import same_public_key as same
from keysyncd.core.jwsplan import JwsExpected
from keysyncd.core.keyring import digest_of
from keysyncd.core.names import show_name
from keysyncd.core.text import plural
from keysyncd.errors import KeysyncError
from keysyncd.io.remote.jwsfleet import JwsFleet

verify = partial(readonly.verify, kind=JwsReads())  # compare, change nothing anywhere


class Adopt:
    """The steps of adopt (``keysyncd.actions.shell.Adoption``): take over the key pairs the
    nodes already use: each node's private key digest (no private key moves) and the public
    keys in node ``source``'s public directory that one node alone does not vouch for
    (core.adoption.judge_publics); every other file there is named, and the next sync
    removes it from every node."""

    def __init__(self, run: Run, source: str, dry: bool) -> None:
        self.run, self.source, self.dry = run, source, dry

    def read(self, act: Act, connections: ExitStack) -> RepositoryState:
        """Load; read every node and judge the clock (a dry run reads none); return the
        journal. Raise KeysyncError if keysyncd already holds pairs, a node does not answer,
        a node's private key has no public key in the source's directory, or the clock is not
        trusted."""
        run = self.run
        self.keys = load(run)
        if self.keys.pairs.signing or self.keys.pairs.next:
            raise KeysyncError(
                f"{run.repository.name}: refusing to adopt: keysyncd already holds key pairs for it"
            )
        fleet = connections.enter_context(Connections(run, observe_clock=not self.dry))
        self.judgement, self.pairs = _adoptable(run, fleet, self.source)
        if self.dry:  # a dry run reads no clock (that writes on the nodes)
            return self.keys.state
        act.clock = check_clock(run, self.keys.state, fleet)
        if not act.clock.trusted:  # it would time the retirement of every key nobody signs with
            raise KeysyncError(f"{run.repository.name}: refusing to adopt: {act.clock.describe()}")
        return self.keys.state

    def plan(self, act: Act, state: RepositoryState) -> Adopted:
        """Return the public keys adopted and those not (named, with why); say it."""
        publics, refused = self.judgement.adopted, self.judgement.refused
        warnings, not_adopted = refused_publics(self.source, refused)
        act.messages += [
            f"adopted {plural(len(publics), 'public key')} from node {self.source} and the "
            f"private key digests of {plural(len(self.pairs), 'node')}; "
            f"{plural(len(refused), 'public key file')} not adopted",
            *warnings,
        ]
        adopted = [show_name(name) for name in publics]
        details = {"source": self.source, "adopted": adopted} | not_adopted
        refusals = f" ({len(refused)} not adopted)" if refused else ""
        return Adopted(f"{len(publics)} public keys{refusals}", tuple(warnings), details)

    def take(self, act: Act, state: RepositoryState) -> RepositoryState:
        """Write the adopted public keys to the store, the pairs to the journal; return it."""
        publics = dict(self.judgement.adopted)
        self.keys.store.write(publics, {})
        now = self.run.clock()  # retention runs from the adoption, after every node was read
        self.keys.pairs = _adopted_state(publics, self.pairs, self.run.node_names, now)
        self.keys.save(self.run)
        return self.keys.state


def _adopted_state(
    publics: dict[str, bytes], pairs: list[model.Pair], nodes: list[str], now: float
) -> model.JwsState:
    """Return the journal's key pairs after an adoption: each node signs with its pair; a
    public key no node signs with but every node holds is someone's old one, kept its full
    retention from ``now``; new names never reuse the adopted serials."""
    mine = {pair.public for pair in pairs}
    retiring = {
        name: model.Retiring("", digest_of(content), now)
        for name, content in publics.items()
        if name not in mine
    }
    signing = {pair.node: pair for pair in pairs}
    return model.JwsState(signing, {}, retiring, model.adopted_serials(publics, nodes))


def _adoptable(run: Run, fleet: JwsFleet, source: str) -> tuple[PublicJudgement, list[model.Pair]]:
    """Return the judgement of ``source``'s public keys and each node's pair as it is now.
    Each node's private key is read only to derive its public half, in memory."""
    fleet.inspect(lambda node: JwsExpected({}, None))
    failed = {n: r.error.detail for n, r in fleet.results.items() if r.error is not None}
    if failed:
        # a node not read has a pair nobody knows, and nobody can say it holds a key
        raise KeysyncError(
            "cannot adopt: not every node answered: "
            + ", ".join(f"{n} ({why})" for n, why in sorted(failed.items()))
        )
    offered = fleet.public_contents(source)
    signers = {node: fleet.private_public(node) for node in fleet.results}
    held = {node: fleet.held_public_keys(node) for node in fleet.results if node != source}
    held[source] = list(offered.values())
    judgement = judge_publics(
        offered, {n: public for n, (public, _) in signers.items()}, held, run.node_names, same
    )
    pairs = []
    for node, (public, digest) in sorted(signers.items()):
        match = sorted(name for name, pem in judgement.adopted.items() if same(pem, public))
        if not match:
            raise KeysyncError(
                f"cannot adopt: node {node}'s private key has no public key in "
                f"node {source}'s public directory"
            )
        adopted = judgement.adopted[match[0]]
        pairs.append(model.Pair(node, 0, match[0], digest_of(adopted), digest, run.clock()))
    return judgement, pairs
