"""kill -9 of ``keysyncd revoke --node NODE`` (JWS) at seeded random instants (issue 22, item
5): after each kill (half at a random instant of the whole run, half at a random instant after
the revocation was journaled), before anything repairs it, every node is loadable by keystone's
JWS code (tests/keystone_jws.py): each file of its public directory is a valid public key (it
reads them all), and a token its private key signs validates on every node; the journal parses.
Then the next ``sync`` finishes the revocation (when it was begun: journaled): the revoked
public key is on no node, no token signed with it validates anywhere, the journal record is
cleared. The targets cycle through the three nodes."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from keysyncd.io.local.state import load_state
from tests.integration.test_revoke_jws import (
    accepted,
    cli,
    journal,
    names,
    public_digests,
    ready,
    signing_digest,
)
from tests.jws_world import World
from tests.keystone_jws import sign
from tests.revoking import start, wait_for_journal

__all__ = ["ready"]  # the fixture: an initialised JWS world on 3 nodes

SEED = 20261208
TRIALS = 21
REPO = "fernet-tokens"


def assert_loadable(world: World) -> None:
    """keystone on every node loads its keys: every public file is a public key, and a token
    signed with each node's private key validates on every node."""
    every = names(world)
    for name in every:
        for path in world.public(name).iterdir():
            load_pem_public_key(path.read_bytes())  # raises on an empty or partial file
    for name in every:
        token = sign(str(world.private(name)), name)
        assert accepted(world, token) == every, name


def test_kill_9_at_random_instants_of_a_jws_revocation(ready: World) -> None:
    world = ready
    began = time.monotonic()
    assert start(world.path, "--node", "node1", "--reason", "uncut").wait(timeout=60) == 0
    uncut = time.monotonic() - began  # how long a revocation takes, start-up included
    chance = random.Random(SEED)
    seen: Counter[str] = Counter()
    nodes = names(world)
    for trial in range(TRIALS):
        node = nodes[trial % len(nodes)]
        leaked = signing_digest(world, node)
        old = sign(str(world.private(node)), node)
        private = world.private_digest(node)
        process = start(world.path, "--node", node, "--reason", "kill -9 trial")
        if trial % 2:  # anywhere in the run
            time.sleep(chance.uniform(0.0, uncut))
        else:  # once the revocation is journaled: somewhere inside it
            journaled = wait_for_journal(world.path, process, uncut)
            time.sleep(chance.uniform(0.0, max(uncut - journaled, 0.05)))
        process.send_signal(signal.SIGKILL)
        code = process.wait(timeout=60)
        assert_loadable(world)
        state = load_state(world.path.parent / "state", REPO)
        begun = state.revocation is not None or leaked in {key.digest for key in state.revoked}
        seen["finished" if code == 0 else "unfinished" if begun else "not begun"] += 1
        seen["new private key installed"] += world.private_digest(node) != private
        assert cli(world, "sync", "--repo", REPO) == 0, trial
        assert journal(world)["revocation"] is None, trial
        if begun:
            assert all(leaked not in public_digests(world, name) for name in nodes), trial
            assert accepted(world, old) == [], trial
        assert_loadable(world)
    print(dict(seen))
    assert seen["unfinished"] >= 6, seen  # the kills hit revocations under way
    assert seen["new private key installed"] >= 1, seen  # and some after its phase 2
