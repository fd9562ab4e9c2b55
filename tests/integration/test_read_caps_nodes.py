"""Read caps on real nodes (keysyncd/core/view.py): a JWS public key on a node is read up
to MAX_PEM bytes, not up to the Fernet cap; one larger than MAX_PEM is reported with the
cap and never read (tests/unit/test_read_caps.py: the same on the controller)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest

from keysyncd.actions import operations
from keysyncd.core.names import MAX_KEY_FILE, MAX_PEM, show_name
from keysyncd.core.view import Entry
from keysyncd.io.remote.jwsfleet import JwsFleet
from keysyncd.io.remote.sftp import NodeSession
from tests.jws_world import World, act


@contextmanager
def connected(world: World) -> Iterator[JwsFleet]:
    config = world.config
    fleet = JwsFleet(config.repositories[0], config.nodes, config.ssh)
    fleet.open()
    try:
        yield fleet
    finally:
        fleet.finish()


def plant(world: World, node: str, name: str | None, size: int) -> tuple[str, bytes]:
    """Put a public key node ``node`` holds, padded with newlines to ``size`` bytes (still a
    valid key for keystone and keysyncd), in its public directory as ``name`` (None: over
    the key itself); return its name and content."""
    found = sorted(world.public(node).glob("*.pem"))[0]
    key = found.read_bytes()
    content = key + b"\n" * (size - len(key))
    path = world.public(node) / (name or found.name)
    path.write_bytes(content)
    path.chmod(0o600)
    return path.name, content


def test_a_valid_public_key_larger_than_the_fernet_cap_is_read_whole_on_a_node(
    world: World,
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    _, content = plant(world, "node1", "padded.pem", MAX_KEY_FILE + 900)
    with connected(world) as fleet:
        assert content in fleet.held_public_keys("node1")
        view = fleet.read_view("node1")
    (padded,) = [entry for entry in view.public if entry.name == "padded.pem"]
    assert padded.problem is None and padded.size == len(content)


def test_an_oversize_public_key_on_a_node_is_reported_not_read(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    huge, _ = plant(world, "node2", None, MAX_PEM + 1)  # a key keysyncd distributes, grown
    asked: list[tuple[str, str]] = []  # (node, file) of every file read
    read_many = NodeSession.read_many

    def reading(self: NodeSession, entries: Sequence[Entry], cap: int = MAX_KEY_FILE) -> object:
        asked.extend((self.node.name, entry.name) for entry in entries)
        return read_many(self, entries, cap)

    monkeypatch.setattr(NodeSession, "read_many", reading)
    checked = act(world, operations.verify, None)
    assert ("node2", "private.pem") in asked and ("node2", huge) not in asked
    node = checked.nodes["node2"]
    assert node.status == "differs"
    assert node.changes["entries"] == [
        {"name": show_name(huge), "problem": f"larger than {MAX_PEM} bytes: not a key"}
    ], node.changes
    assert {n: checked.nodes[n].status for n in ("node1", "node3")} == {
        "node1": "in_sync",
        "node3": "in_sync",
    }
