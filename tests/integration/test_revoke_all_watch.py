"""Every token of the new key set stays valid during ``keysyncd revoke --all --force`` of a
symmetric repository (issue 22, acceptance, item 2): a watcher runs throughout, doing what
keystone does on each node (its own loader, then MultiFernet); once a node's primary is a new
key, it issues a token with it and validates it on every node right away, counting every
rejection. Zero rejections. A token made with an old key (before, or issued during while a
node's primary was still old) is meant to die: once revoke exits 0, each is rejected on every
node, and a token of the new primary validates everywhere.

A keystone request that lists the directory and then opens a key file the revocation has just
deleted fails too (SPEC rule 11): the watcher counts those apart (``races``), not asserted on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from keysyncd.testing.fleet import Fleet
from tests.integration.test_revoke import accepted, journal, keys_of, ready, revoke, tokens_by_key
from tests.keystone_compat import load_keys, multifernet
from tests.revoking import Watching, throughout

__all__ = ["ready"]  # the fixture: a fleet holding {0, 1, 2}, every node in sync


@dataclass
class NewKeyWatcher(Watching):
    """keystone on every node: a token of each node's primary, validated on every node unless
    the primary is one of ``old`` (then the token goes to ``dying``)."""

    old: set[str]
    issued: int = 0
    dying: list[bytes] = field(default_factory=list)

    def check(self, name: str, directory: Path) -> None:
        primary = load_keys(str(directory))[0]
        token = Fernet(primary).encrypt(b"during")
        if primary in self.old:  # an old key: its tokens are meant to die
            self.dying.append(token)
            return
        self.issued += 1
        for reader, place in self.directories.items():
            try:
                multifernet(str(place)).decrypt(token)
            except InvalidToken:
                self.rejections.append(f"{reader}: issued on {name}")
            except OSError:
                self.races += 1


def test_no_new_token_is_rejected_anywhere_while_revoke_all_runs_and_every_old_one_dies(
    ready: tuple[Fleet, Path],
) -> None:
    fleet, config = ready
    every = [node.name for node in fleet.nodes]
    before = tokens_by_key(config)
    old = {key.decode() for key in before}
    directories = {node.name: node.directory for node in fleet.nodes}
    watcher = NewKeyWatcher(directories=directories, old=old)
    code = throughout(watcher, lambda: revoke(config, "--all", "--reason", "stolen", "--force"))
    assert code == 0
    assert watcher.rounds >= 2, "the watcher did not run during the revocation"
    assert watcher.rejections == [], watcher.rejections[:10]
    for token in [*before.values(), *watcher.dying]:  # rejected everywhere once revoke exits 0
        assert accepted(fleet, token) == []
    keys = keys_of(config.parent / "keys")
    assert not {key.decode() for key in keys.values()} & old
    assert accepted(fleet, Fernet(keys[max(keys)]).encrypt(b"user")) == every
    assert journal(config)["revocation"] is None
