"""Every other token stays valid during a revocation (issue 22, acceptance): a watcher runs
throughout ``keysyncd revoke``, doing what keystone does on each node (its own loader, then
MultiFernet), and counts every rejection of a token not made with the revoked key: tokens made
before with every other key, and tokens each node issues during the revocation with whatever
is its primary at that instant, validated on every node right away. Zero rejections.

A keystone request that lists the directory and then opens a key file the revocation has just
deleted fails too (SPEC rule 11: Fernet deletions happen in one short pass): the watcher counts
those apart (``races``); they are not token rejections and are not asserted on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken

from keysyncd.testing.fleet import Fleet
from tests.integration.test_revoke import keys_of, ready, revoke, tokens_by_key
from tests.keystone_compat import load_keys, multifernet
from tests.revoking import Watching, throughout

__all__ = ["ready"]  # the fixture, imported


@dataclass
class Watcher(Watching):
    """keystone on every node, validating tokens in a loop until stopped."""

    tokens: list[bytes]
    leaked: str

    def check(self, name: str, directory: Path) -> None:
        crypto = multifernet(str(directory))
        for token in self.tokens:
            self.validate(crypto, token, f"{name}: a token made before")
        primary = load_keys(str(directory))[0]
        if primary == self.leaked:  # made with the leaked key: it is meant to die
            return
        issued = Fernet(primary).encrypt(b"during")
        for reader, place in self.directories.items():
            try:
                self.validate(multifernet(str(place)), issued, f"{reader}: issued on {name}")
            except OSError:
                self.races += 1

    def validate(self, crypto: object, token: bytes, where: str) -> None:
        try:
            crypto.decrypt(token)  # type: ignore[attr-defined]
        except InvalidToken:
            self.rejections.append(where)


@pytest.mark.parametrize("index", [0, 2, 1], ids=["staged", "primary", "secondary"])
def test_no_other_token_is_rejected_anywhere_while_revoke_runs(
    ready: tuple[Fleet, Path], index: int
) -> None:
    fleet, config = ready
    leaked = keys_of(config.parent / "keys")[index]
    others = [token for key, token in tokens_by_key(config).items() if key != leaked]
    directories = {node.name: node.directory for node in fleet.nodes}
    watcher = Watcher(directories=directories, tokens=others, leaked=leaked.decode())
    code = throughout(watcher, lambda: revoke(config, "--index", str(index), "--reason", "leak"))
    assert code == 0
    assert watcher.rounds >= 2, "the watcher did not run during the revocation"
    assert watcher.rejections == [], watcher.rejections[:10]
