"""JWS key pairs (``kind: jws``) against a real OpenSSH fleet, judged as keystone judges.

A token watcher signs with every node's private.pem and validates every live token on every
node by trying every file in that node's public directory (tests/keystone_jws.py, keystone's
own algorithm), all the time, while keysyncd initialises and rotates, with each push slowed
down so that the watcher sees every intermediate state.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import pytest

from keysyncd.actions import operations
from keysyncd.commands.cli import main
from keysyncd.errors import KeysyncError, RepositoryError
from tests.jws_world import RETENTION, World, act
from tests.keystone_jws import sign, validate


@dataclass
class Watcher:
    """keystone on every node: each signs tokens, each validates every live token."""

    world: World
    tokens: list[tuple[str, float, str]] = field(default_factory=list)
    validations: int = 0
    rejections: list[str] = field(default_factory=list)
    races: int = 0  # a listing that saw a file retired before keystone's open() of it
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        names = [node.name for node in self.world.fleet.nodes]
        for _ in range(100_000):  # bounded: about 20 minutes at most
            if self.stop.wait(0.01):
                return
            now = time.time()
            for name in names:
                if (self.world.private(name) / "private.pem").exists():
                    token = sign(str(self.world.private(name)), name, lifetime=RETENTION)
                    self.tokens.append((token, now, name))
            self.tokens = [t for t in self.tokens if t[1] + RETENTION > time.time()]
            for token, issued_at, signer in list(self.tokens):
                for name in names:
                    self._validate(token, name, f"{signer}'s token of {issued_at:.2f} on {name}")

    def _validate(self, token: str, node: str, what: str) -> None:
        try:
            validate(token, str(self.world.public(node)))
            self.validations += 1
        except FileNotFoundError:  # keystone's own race with any deletion: listdir, then open
            self.races += 1
        except Exception as error:  # anything keystone would fail with is a rejection
            self.rejections.append(f"{what}: {type(error).__name__}: {error}")

    def __enter__(self) -> Watcher:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def slowly(phase: str, node: str, done: int, total: int) -> None:
    """Slow every push down at each phase boundary: the watcher sees each in-between state."""
    if done == 0:
        time.sleep(0.3)


def test_no_token_is_ever_rejected_through_init_and_rotations(world: World) -> None:
    with Watcher(world) as watcher:
        assert act(world, operations.init, False, progress=slowly).outcome == "ok"
        for number in range(6):
            time.sleep(RETENTION + 0.2)  # the previous public keys may go at this rotation
            result = act(world, operations.rotate, False, False, progress=slowly)
            assert result.outcome == "ok", (number, result.messages)
        time.sleep(0.5)
    print(f"watcher: {watcher.validations} validations, {watcher.races} listing races")
    assert watcher.rejections == []
    assert watcher.validations > 500, watcher.validations


def test_each_node_signs_with_its_own_key_and_the_controller_keeps_none(world: World) -> None:
    names = [node.name for node in world.fleet.nodes]
    assert act(world, operations.init, False).outcome == "ok"
    first = {name: world.private_digest(name) for name in names}
    assert len(set(first.values())) == 3, "every node's private key is its own"
    first_public = sorted(os.listdir(world.public("node1")))
    assert act(world, operations.rotate, False, False).outcome == "ok"
    second = {name: world.private_digest(name) for name in names}
    assert all(first[n] != second[n] for n in names), "every node signs with a new key"
    assert os.listdir(world.store / "private") == [], "no private key left on the controller"
    time.sleep(RETENTION + 0.2)
    assert act(world, operations.sync, None, False, False).outcome == "ok"
    for name in names:
        public = sorted(os.listdir(world.public(name)))
        assert not set(first_public) & set(public), "old public keys gone once safe"
        assert len(public) == 3
        assert sorted(os.listdir(world.private(name))) == ["private.pem"]


def test_a_node_down_defers_the_rotation_and_force_spares_its_public_key(world: World) -> None:
    names = [node.name for node in world.fleet.nodes]
    assert act(world, operations.init, False).outcome == "ok"
    before = {name: world.private_digest(name) for name in names}
    node3_public = set(os.listdir(world.public("node3")))
    world.fleet.stop_node("node3")
    result = act(world, operations.rotate, False, False)
    assert result.outcome == "deferred", result.messages
    assert {name: world.private_digest(name) for name in names} == before, "nothing installed"
    forced = act(world, operations.rotate, False, True)
    assert forced.report is not None and forced.report.forced
    after = {name: world.private_digest(name) for name in names}
    assert after["node1"] != before["node1"] and after["node2"] != before["node2"]
    assert after["node3"] == before["node3"]
    for name in ("node1", "node2"):  # node3 still signs with its old key: still trusted
        assert node3_public <= set(os.listdir(world.public(name)))
    world.fleet.start_node("node3")
    assert act(world, operations.sync, None, False, False).outcome == "ok"
    assert world.private_digest("node3") != before["node3"], "its waiting pair installed"
    assert os.listdir(world.store / "private") == []


def test_a_corrupt_private_key_or_a_stray_public_file_is_drift_repaired(world: World) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    (world.private("node2") / "private.pem").write_text("not a key\n")
    (world.public("node3") / ".keysyncd-stray.tmp").write_text("half a key")
    (world.public("node1") / "unknown.pem").write_text("junk")
    checked = act(world, operations.verify, None)
    assert {n: node.status for n, node in checked.nodes.items()} == {
        "node1": "differs",
        "node2": "differs",
        "node3": "differs",
    }
    repaired = act(world, operations.check_fleet)
    assert repaired is not None and repaired.outcome == "ok", repaired and repaired.messages
    assert any("private.pem was not keysyncd's on node2" in m for m in repaired.messages)
    assert act(world, operations.verify, None).outcome == "ok"
    for name in ("node1", "node3"):
        assert all(n.endswith(".pem") and "-" in n for n in os.listdir(world.public(name)))
    token = sign(str(world.private("node2")), "node2")
    for name in ("node1", "node2", "node3"):
        validate(token, str(world.public(name)))


def test_a_non_pem_file_in_the_controllers_store_is_refused(world: World) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    (world.store / "public" / "junk.pem").write_text("not a key\n")
    before = {n.name: sorted(os.listdir(world.public(n.name))) for n in world.fleet.nodes}
    with pytest.raises(RepositoryError, match=r"junk.pem'?: not a PEM public key"):
        act(world, operations.rotate, False, False)
    assert {n.name: sorted(os.listdir(world.public(n.name))) for n in world.fleet.nodes} == before


def test_sync_of_one_node_is_refused_for_jws(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A node's private key may change only once every node holds its public key: a jws
    repository is always synced as a whole, never one node alone (and never silently all)."""
    assert act(world, operations.init, False).outcome == "ok"
    before = {n.name: world.private_digest(n.name) for n in world.fleet.nodes}
    capsys.readouterr()
    assert main(["-c", str(world.path), "sync", "--node", "node1", "--force"]) == 2
    err = capsys.readouterr().err
    assert "sync --node does not apply to kind jws" in err, err
    assert err.count("fernet-tokens: ") == 1, err
    assert {n.name: world.private_digest(n.name) for n in world.fleet.nodes} == before


def test_dry_runs_say_what_the_real_run_would_do_and_change_nothing(world: World) -> None:
    """init --dry-run refuses as init would; a sync --dry-run names a node whose private.pem
    is not keysyncd's (the real sync gives it a new pair); neither writes anything."""
    assert act(world, operations.init, False).outcome == "ok"
    with pytest.raises(KeysyncError, match="refusing to initialise"):
        act(world, operations.init, True)
    (world.private("node2") / "private.pem").write_text("not a key\n")
    before = {
        path: path.read_bytes()
        for path in sorted(world.path.parent.rglob("*"))
        if path.is_file() and "reports" not in path.parts
    }
    nodes_before = {n.name: sorted(os.listdir(world.public(n.name))) for n in world.fleet.nodes}
    preview = act(world, operations.sync, None, False, True)
    assert any("not keysyncd's on node2: would make new pairs" in m for m in preview.messages)
    after = {
        path: path.read_bytes()
        for path in sorted(world.path.parent.rglob("*"))
        if path.is_file() and "reports" not in path.parts and path.name != "lock"
    }
    assert after == {p: c for p, c in before.items() if p.name != "lock"}
    assert {n.name: sorted(os.listdir(world.public(n.name))) for n in world.fleet.nodes} == (
        nodes_before
    )
