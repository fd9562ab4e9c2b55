"""A revocation interrupted (issue 22, item 5, in part): the revocation is journaled before
anything changes for it on any node, and the next run of a mutating command finishes it.
keysyncd is stopped in-process at two points by an exception nothing catches (no kill -9
here: the journal on disk is what a kill would leave, since every write is synchronous)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from keysyncd.actions import revoke as revoking
from keysyncd.core.keyring import digest_of
from keysyncd.testing.fleet import Fleet
from tests.integration.test_revoke import accepted, journal, keys_of, ready, revoke
from tests.integration.test_rotate import run
from tests.keystone_compat import load_keys

__all__ = ["ready"]  # the fixture, imported


class Killed(BaseException):
    """keysyncd dies here (no handler catches a BaseException that is not an Exception)."""


def die(*args: object, **kwargs: object) -> None:
    raise Killed


@pytest.mark.parametrize(
    ("index", "where"),
    [(2, "connect"), (2, "push"), (1, "connect"), (1, "push"), (0, "push")],
)
def test_the_next_sync_finishes_an_interrupted_revocation(
    ready: tuple[Fleet, Path], monkeypatch: pytest.MonkeyPatch, index: int, where: str
) -> None:
    fleet, config = ready
    leaked = keys_of(config.parent / "keys")[index]
    token = Fernet(leaked).encrypt(b"user")
    before = {node.name: keys_of(node.directory) for node in fleet.nodes}
    with monkeypatch.context() as patched:
        if where == "connect":  # right after the journal write: nothing changed anywhere
            patched.setattr(revoking.Revoke, "connect", die)
        else:  # the controller changed, no node yet
            patched.setattr(revoking, "push_keyset", die)
        with pytest.raises(Killed):
            revoke(config, "--index", str(index), "--reason", "leak")
    assert journal(config)["revocation"]["digest"] == digest_of(leaked)
    assert {node.name: keys_of(node.directory) for node in fleet.nodes} == before
    for node in fleet.nodes:
        assert load_keys(str(node.directory))  # keystone loads every node
    assert load_keys(str(config.parent / "keys"))
    assert run(config, "status") == 1  # unfinished
    assert run(config, "sync") == 0  # finishes it
    assert journal(config)["revocation"] is None
    assert accepted(fleet, token) == []
    for directory in [config.parent / "keys", *(node.directory for node in fleet.nodes)]:
        assert leaked not in keys_of(directory).values()
    assert run(config, "status") == 0
    assert run(config, "rotate") == 0
