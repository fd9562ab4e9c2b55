"""Hostile and crash cases of ``kind: jws`` found by a red-team pass (each failed before its fix).

They use the real fleet and the ``world`` fixture of test_jws.py. Every test judges as
keystone does: a token signed with a node's private.pem
must validate on every node (tests/keystone_jws.py) for as long as it is live.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import jwt
import pytest
import yaml

from keysyncd.actions import context as latereports
from keysyncd.actions import operations
from keysyncd.config import load_config
from keysyncd.core.jwskeys import generate_pair
from keysyncd.errors import ConfigError, KeysyncError
from keysyncd.io.remote.jwsfleet import JwsFleet
from tests.jws_world import World, act
from tests.keystone_jws import sign, validate
from tests.traversable import repoint

NAMES = ("node1", "node2", "node3")


class Crash(BaseException):
    """kill -9 at this instant: nothing after it runs (no except Exception catches it)."""


def live(world: World, tokens: list[tuple[str, str]], nodes=NAMES) -> list[str]:
    """Return every (token, node) that keystone would reject."""
    bad = []
    for who, token in tokens:
        for node in nodes:
            try:
                validate(token, str(world.public(node)))
            except Exception as error:  # anything keystone would fail with
                bad.append(f"{who}'s token on {node}: {type(error).__name__}")
    return bad


def long_retention(world: World) -> None:
    document = yaml.safe_load(world.path.read_text())
    document["repositories"][0]["token_expiration"] = 3600
    world.path.write_text(yaml.safe_dump(document))


def test_readopting_a_keysyncd_fleet_then_rotating_keeps_every_token_valid(world: World) -> None:
    """Controller rebuilt (state lost), fleet re-adopted: the next rotation generated
    node1-1.pem again, overwrote the adopted public key of the same name everywhere (in
    phase 2 of a *deferred* rotation) and every token of every node was rejected."""
    long_retention(world)
    assert act(world, operations.init, False).outcome == "ok"
    shutil.rmtree(world.path.parent / "state")
    act(world, operations.adopt, "node1")
    before = [(n, sign(str(world.private(n)), n)) for n in NAMES]
    act(world, operations.rotate, False, False)
    after = [(n, sign(str(world.private(n)), n)) for n in NAMES]
    assert live(world, before + after) == []
    assert act(world, operations.verify, None).outcome == "ok"


def test_a_crash_after_install_never_drops_the_installed_public_key(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 after phase 2 verified (private keys already deleted from the store, journal
    not yet saved): the next sync took the installed pairs for 'never used', deleted their
    public keys from every node (even though the sync was deferred) and the nodes' tokens
    were rejected everywhere."""
    long_retention(world)
    assert act(world, operations.init, False).outcome == "ok"

    def crash(*args: object, **kwargs: object) -> None:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(latereports, "write_report", crash)
        with pytest.raises(Crash):
            act(world, operations.rotate, False, False)
    tokens = [(n, sign(str(world.private(n)), n)) for n in NAMES]
    world.fleet.stop_node("node3")
    act(world, operations.sync, None, False, False)  # deferred: node3 is down
    assert live(world, tokens, ("node1", "node2")) == []
    world.fleet.start_node("node3")
    act(world, operations.sync, None, False, False)
    assert live(world, tokens) == []


def test_a_crash_while_retiring_leaves_a_store_the_next_run_accepts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """_tidy_store deleted the retired public keys from the store before the journal forgot
    them; a kill before the commit wedged the repository ('lost public keys the nodes need',
    adopt refused)."""
    assert act(world, operations.init, False).outcome == "ok"
    assert act(world, operations.rotate, False, False).outcome == "ok"
    time.sleep(2.3)  # the first public keys are due for retirement

    def crash(*args: object, **kwargs: object) -> None:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(JwsFleet, "inspect", crash)
        with pytest.raises(Crash):
            act(world, operations.sync, None, False, False)
    assert act(world, operations.sync, None, False, False).outcome == "ok"


def test_a_shared_adopted_key_is_kept_while_a_node_still_signs_with_it(world: World) -> None:
    """Nodes sharing one pair (adopted): node3 down at a forced rotation still signs with
    it, but the retention clock started when node1 stopped; the key was then 'retired' from
    every node and node3's tokens were rejected."""
    private, public = generate_pair("ES256")
    for name in NAMES:
        world.private(name).mkdir(mode=0o700)
        world.public(name).mkdir(mode=0o700)
        (world.private(name) / "private.pem").write_bytes(private)
        (world.public(name) / "public.pem").write_bytes(public)
    act(world, operations.adopt, "node1")
    world.fleet.stop_node("node3")
    act(world, operations.rotate, False, True)
    time.sleep(2.3)
    token = sign(str(world.private("node3")), "node3")  # node3 serves, only its sshd is down
    act(world, operations.sync, None, False, False)
    assert live(world, [("node3", token)], ("node1", "node2")) == []


def test_a_store_private_key_that_is_not_the_journals_is_never_installed(world: World) -> None:
    long_retention(world)
    assert act(world, operations.init, False).outcome == "ok"
    world.fleet.stop_node("node3")
    act(world, operations.rotate, False, True)  # node3's pair waits in the store
    [waiting] = list((world.store / "private").iterdir())
    waiting.write_bytes(generate_pair("ES256")[0])
    before = world.private_digest("node3")
    world.fleet.start_node("node3")
    with pytest.raises(KeysyncError, match="private"):
        act(world, operations.sync, None, False, False)
    assert world.private_digest("node3") == before


def test_a_store_directory_others_may_write_is_refused(world: World) -> None:
    """A world-writable store/public let another local user swap a waiting public key; it
    was pushed to a node, which then accepted tokens forged with the attacker's key."""
    long_retention(world)
    assert act(world, operations.init, False).outcome == "ok"
    world.fleet.stop_node("node3")
    act(world, operations.rotate, False, False)  # deferred: the new pairs wait in the store
    (world.store / "public").chmod(0o777)
    evil_private, evil_public = generate_pair("ES256")
    [target] = [p for p in (world.store / "public").iterdir() if p.name == "node1-2.pem"]
    target.write_bytes(evil_public)  # what any local user could now do
    world.fleet.start_node("node3")
    with pytest.raises(KeysyncError, match="unsafe"):
        act(world, operations.sync, None, False, False)
    forged = jwt.encode({"sub": "admin", "exp": int(time.time()) + 60}, evil_private, "ES256")
    for name in NAMES:
        with pytest.raises(LookupError):
            validate(forged, str(world.public(name)))


def test_store_subdirectories_are_never_followed_through_a_symlink(
    world: World, tmp_path: Path
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(world.store / "public", elsewhere)
    elsewhere.chmod(0o755)
    (elsewhere / "someone-elses.pem").write_bytes(generate_pair("ES256")[1])
    shutil.rmtree(world.store / "public")
    (world.store / "public").symlink_to(elsewhere)
    with pytest.raises(KeysyncError):
        act(world, operations.rotate, False, False)
    assert (elsewhere / "someone-elses.pem").exists()
    assert elsewhere.stat().st_mode & 0o777 == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_the_configured_owner_can_enter_the_directories_init_made(
    world: World, traversable_root: Path
) -> None:
    """With owner/group set and an SSH user that is not keystone (root here), init made
    private/ and public/ 0700 owned by the SSH user: keystone (uid 12345) could open
    neither, while verify said in_sync. The nodes live where uid 12345 can pass through
    every directory above (pytest's tmp is root's alone: init would rightly fail there)."""
    paths = repoint(world.path, world.fleet, traversable_root, owner=12345, group=12345)
    for node in world.fleet.nodes:  # the world's helpers look at node.directory
        paths[node.name].mkdir(mode=0o755)
        node.directory = paths[node.name]
    assert act(world, operations.init, False).outcome == "ok"
    for directory in (world.private("node1"), world.public("node1")):
        info = directory.stat()
        usable = info.st_uid == 12345 or (info.st_gid == 12345 and info.st_mode & 0o050 == 0o050)
        assert usable, (directory, info.st_uid, info.st_gid, oct(info.st_mode))


def test_a_private_path_equal_to_the_public_path_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "report_dir": str(tmp_path / "reports"),
                "repositories": [
                    {
                        "name": "jws",
                        "kind": "jws",
                        "path": "/etc/keystone/jws-keys",
                        "private_path": "/etc/keystone/jws-keys/k",
                        "public_path": "/etc/keystone/jws-keys/k",
                    }
                ],
                "ssh": {"user": "keystone", "known_hosts": str(tmp_path / "kh")},
                "nodes": [{"name": "ctl1", "host": "192.0.2.1"}],
            }
        )
    )
    with pytest.raises(ConfigError, match="private_path"):
        load_config(path)
