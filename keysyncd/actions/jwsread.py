"""The JWS kind's actions that read the nodes before anything else: ``verify`` (compare,
change nothing) and ``adopt`` (take over the pairs the nodes already use)."""

from __future__ import annotations

from keysyncd.actions.context import ActionResult, Draft, Run, check_clock, commit
from keysyncd.actions.jwsload import Connections, expect, load
from keysyncd.core import jws as model
from keysyncd.core.jwskeys import same_public_key as same
from keysyncd.core.jwsplan import JwsExpected
from keysyncd.core.keyring import digest_of
from keysyncd.core.nodes import checked
from keysyncd.core.vocabulary import Action
from keysyncd.errors import KeysyncError
from keysyncd.io.jwsfleet import JwsFleet


def verify(run: Run, node: str | None = None) -> ActionResult:
    """Read every node (or one) and compare it with the journal; change nothing anywhere."""
    started = run.clock()
    keys = load(run)
    with Connections(run, node) as fleet:
        clock = check_clock(run, keys.state, fleet)
        fleet.inspect(expect(keys))
        nodes = {name: result.outcome() for name, result in fleet.results.items()}
    state = checked(keys.state, nodes, run.node_names, run.clock(), clock)
    return commit(run, state, Draft(Action.VERIFY, started, nodes, clock=clock))


def adopt(run: Run, source: str) -> list[str]:
    """Take over the key pairs the nodes already use: the public keys in node ``source``'s
    public directory, and each node's private key digest (no private key moves). Return the
    public key names taken over. Raise KeysyncError (nothing written) if keysyncd already
    holds pairs, or a node's private key has no public key there."""
    keys = load(run)
    if keys.pairs.signing or keys.pairs.next:
        raise KeysyncError(
            f"{run.repository.name}: refusing to adopt: keysyncd already holds key pairs for it"
        )
    with Connections(run) as fleet:
        publics, pairs = _adoptable(run, fleet, source)
        clock = check_clock(run, keys.state, fleet)
    if not clock.trusted:  # it would time the retirement of every key nobody signs with
        raise KeysyncError(f"{run.repository.name}: refusing to adopt: {clock.describe()}")
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
    commit(run, keys.state, Draft(Action.ADOPT, now, messages=(message,), clock=clock))
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
