"""JWS as an operator meets it on a real fleet: init refuses a node that already has keys,
status and plan speak of key pairs, the controller's store of waiting private keys is
private, and no private key ever reaches output, logs, reports or the journal."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from keysyncd.actions import operations
from keysyncd.commands.cli import main
from keysyncd.core.jwskeys import generate_pair
from keysyncd.errors import KeysyncError
from tests.jws_world import World, act


def test_init_refuses_a_node_that_already_holds_jws_keys(world: World) -> None:
    private, public = generate_pair("ES256")
    node2 = world.fleet.node("node2").directory
    (node2 / "private").mkdir(mode=0o700)
    (node2 / "public").mkdir(mode=0o700)
    (node2 / "private" / "private.pem").write_bytes(private)
    (node2 / "public" / "theirs.pem").write_bytes(public)
    with pytest.raises(KeysyncError, match=r"node node2 already holds JWS keys; use "):
        act(world, operations.init, False)
    assert (node2 / "private" / "private.pem").read_bytes() == private
    assert os.listdir(node2 / "public") == ["theirs.pem"]
    for name in ("node1", "node3"):  # nothing pushed anywhere
        assert not (world.fleet.node(name).directory / "public").exists()


def test_status_and_plan_describe_the_key_pairs(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    capsys.readouterr()
    assert main(["-c", str(world.path), "status"]) == 0
    status = capsys.readouterr().out
    assert "fernet-tokens" in status and "jws" in status, status
    for node in world.fleet.nodes:
        assert node.name in status, status
    assert main(["-c", str(world.path), "plan"]) == 0
    plan = capsys.readouterr().out
    assert "fernet-tokens" in plan, plan


def test_waiting_private_keys_are_kept_private_and_never_shown(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A node down at a forced rotation: its new pair waits in the controller's store
    (0700 directory, 0600 file) until the node is back; no private key is ever printed,
    logged, reported or journalled, before or after."""
    caplog.set_level(logging.DEBUG)
    config = ["-c", str(world.path)]
    outputs: list[str] = []
    privates: set[bytes] = set()

    def collect() -> None:
        captured = capsys.readouterr()
        outputs.extend([captured.out, captured.err])
        for node in world.fleet.nodes:
            key = world.private(node.name) / "private.pem"
            if key.exists():
                privates.add(key.read_bytes())

    assert main([*config, "--debug", "init"]) == 0
    collect()
    world.fleet.stop_node("node3")
    assert main([*config, "--debug", "rotate", "--force"]) == 1  # node3 failed
    collect()
    store = world.store / "private"
    waiting = [store / name for name in os.listdir(store)]
    assert len(waiting) == 1, waiting
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert stat.S_IMODE(waiting[0].lstat().st_mode) == 0o600
    assert stat.S_ISREG(waiting[0].lstat().st_mode)
    privates.add(waiting[0].read_bytes())
    for command in (["status"], ["status", "--json"], ["plan"], ["verify"], ["report", "list"]):
        main([*config, "--debug", *command])
        collect()
    world.fleet.start_node("node3")
    assert main([*config, "--debug", "sync", "--json"]) == 0
    collect()
    assert os.listdir(store) == [], "the waiting key left the controller once installed"

    # everything the controller wrote but the store itself: journal, reports, index, head
    controller = world.path.parent
    written = [
        p.read_bytes()
        for p in controller.rglob("*")
        if p.is_file() and world.store not in p.parents
    ]
    assert any(p.parent.name == "reports" for p in controller.rglob("*.json")), "no reports?"
    haystack = "\n".join(outputs + [r.getMessage() for r in caplog.records]).encode()
    haystack += b"\n".join(written)
    assert len(privates) >= 5, "every node's first key, two new ones and node3's waiting one"
    for private in privates:
        body = b"".join(private.splitlines()[1:-1])  # the base64 body of the PEM
        assert len(body) > 40
        assert body not in haystack
        for line in private.splitlines()[1:-1]:
            assert line not in haystack
