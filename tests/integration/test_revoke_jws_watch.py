"""Every other JWS token stays valid during a revocation (issue 22, acceptance, item 3): a
watcher runs throughout ``keysyncd revoke --node NODE`` and ``revoke --all --force``, doing what
keystone does on each node (tests/keystone_jws.py: sign with its private.pem, validate by
trying every file of its public directory), and counts every rejection of a token not signed
with a revoked key: tokens made before with every other node's key, and tokens each node signs
during the revocation with whatever private key it holds at that instant, validated on every
node right away (a token signed with a revoked key is meant to die: kept, judged after). Zero
rejections. Once revoke exits 0, every token signed with a revoked key is rejected everywhere
and tokens signed by every node now validate everywhere.

A keystone request that lists the public directory and then opens a file the revocation has
just removed fails too (SPEC rule 11): the watcher counts those apart (``races``); they are not
token rejections and are not asserted on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest

from tests.integration.test_revoke_jws import (
    accepted,
    journal,
    names,
    ready,
    revoke,
    signing_digest,
    tokens,
)
from tests.jws_world import World
from tests.keystone_jws import sign, validate
from tests.revoking import Watching, throughout

__all__ = ["ready"]  # the fixture: an initialised JWS world on 3 nodes


def signed_with(token: str, public_keys: list[str]) -> bool:
    """Return True if one of ``public_keys`` (PEM) verifies ``token``."""
    for public_key in public_keys:
        try:
            jwt.decode(token, public_key, algorithms=["ES256"], options={"verify_exp": False})
        except (jwt.InvalidSignatureError, jwt.DecodeError):
            continue
        return True
    return False


@dataclass
class JwsWatcher(Watching):
    """keystone on every node, validating tokens in a loop until stopped: ``tokens`` (made
    before with keys that are not revoked) and one signed by each node now, unless it is
    signed with one of ``revoked`` (public keys, PEM): those go to ``dying``."""

    tokens: list[str]
    revoked: list[str]
    issued: int = 0
    dying: list[str] = field(default_factory=list)

    def check(self, name: str, directory: Path) -> None:
        for token in self.tokens:
            self.validate(token, directory, f"{name}: a token made before")
        token = sign(str(directory / "private"), name)
        if signed_with(token, self.revoked):  # signed with a revoked key: it is meant to die
            self.dying.append(token)
            return
        self.issued += 1
        for reader, place in self.directories.items():
            try:
                self.validate(token, place, f"{reader}: signed on {name}")
            except OSError:
                self.races += 1

    def validate(self, token: str, directory: Path, where: str) -> None:
        try:
            validate(token, str(directory / "public"))
        except LookupError:  # keystone's TokenNotFound
            self.rejections.append(where)


def public_keys(world: World, digests: set[str] | None) -> list[str]:
    """Return the public keys (PEM) of every node whose digest is in ``digests`` (None: all)."""
    found: dict[str, str] = {}
    for name in names(world):
        for path in world.public(name).iterdir():
            content = path.read_bytes()
            digest = hashlib.sha256(content).hexdigest()
            if digests is None or digest in digests:
                found[digest] = content.decode()
    return list(found.values())


def watched(world: World, before: list[str], revoked: list[str], *args: str) -> JwsWatcher:
    """Run ``revoke ARGS`` with a watcher throughout; return it (revoke exited 0)."""
    directories = {node.name: node.directory for node in world.fleet.nodes}
    watcher = JwsWatcher(directories=directories, tokens=before, revoked=revoked)
    assert throughout(watcher, lambda: revoke(world, *args)) == 0
    assert watcher.rounds >= 2, "the watcher did not run during the revocation"
    assert watcher.rejections == [], watcher.rejections[:10]
    return watcher


@pytest.mark.parametrize("node", ["node1", "node2"])
def test_no_other_jws_token_is_rejected_anywhere_while_revoke_node_runs(
    ready: World, node: str
) -> None:
    world = ready
    every = names(world)
    before = tokens(world)
    leaked = signing_digest(world, node)
    revoked = public_keys(world, {leaked})
    assert len(revoked) == 1
    others = [token for name, token in before.items() if name != node]
    watcher = watched(world, others, revoked, "--node", node, "--reason", "leak")
    assert watcher.issued > 0, "no token was signed during the revocation"
    for token in [before[node], *watcher.dying]:  # rejected everywhere once revoke exits 0
        assert accepted(world, token) == []
    for token in [*others, *tokens(world).values()]:
        assert accepted(world, token) == every
    assert journal(world)["revocation"] is None


def test_no_new_jws_token_is_rejected_anywhere_while_revoke_all_runs(ready: World) -> None:
    world = ready
    every = names(world)
    before = tokens(world)
    revoked = public_keys(world, None)  # every public key: every token dies
    watcher = watched(world, [], revoked, "--all", "--reason", "backup stolen", "--force")
    for token in [*before.values(), *watcher.dying]:
        assert accepted(world, token) == []
    for token in tokens(world).values():
        assert not signed_with(token, revoked)
        assert accepted(world, token) == every
    assert journal(world)["revocation"] is None
