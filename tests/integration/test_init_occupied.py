"""``init`` against a real fleet never takes over a node directory that holds anything but the
repository's own files: it refuses, saying what to do, and every node, the directory's mode,
owner and files included, stays as it was (SPEC rule 8)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.jws_world import World


def snapshot(directory: Path) -> dict[str, tuple[int, int, int, bytes]]:
    """Return mode, owner, group and content of ``directory`` and every file in it."""
    found = {}
    for path in [directory, *sorted(directory.rglob("*"))]:
        info = os.lstat(path)
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
        found[str(path)] = (info.st_mode, info.st_uid, info.st_gid, content)
    return found


def occupy(directory: Path) -> None:
    """Make ``directory`` an existing 0755 directory owned by nobody holding an unrelated
    file, as /etc/keystone would be."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "keystone.conf").write_text("[DEFAULT]\ndebug = false\n")
    (directory / "keystone.conf").chmod(0o640)
    directory.chmod(0o755)
    os.chown(directory, 65534, 65534)


def test_init_refuses_a_node_directory_holding_other_files(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    occupied = fleet.node("node2").directory
    occupy(occupied)
    config = fleet_config(fleet, tmp_path / "ctl")
    before = {
        node.name: snapshot(node.directory) for node in fleet.nodes if node.directory.exists()
    }
    capsys.readouterr()
    assert main(["-c", str(config), "init"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"keysyncd: error: fernet-tokens: init: node node2: {occupied} already exists and holds "
        "other files ('keystone.conf'): keysyncd would change its mode and owner; point path "
        "at a directory of its own"
    )
    after = {node.name: snapshot(node.directory) for node in fleet.nodes if node.directory.exists()}
    assert after == before, "no node changed: the occupied one keeps its mode, owner and file"
    keys = tmp_path / "ctl" / "keys"
    assert not keys.exists() or not os.listdir(keys), "nothing created on the controller"


def test_init_refuses_a_jws_private_directory_holding_other_files(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    occupied = world.private("node3")
    occupy(occupied)
    before = snapshot(world.fleet.node("node3").directory)
    capsys.readouterr()
    assert main(["-c", str(world.path), "init"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert f"init: node node3: {occupied} already exists and holds other files " in line
    assert "('keystone.conf')" in line and "point path at a directory of its own" in line
    assert snapshot(world.fleet.node("node3").directory) == before
    for node in ("node1", "node2"):
        assert not world.public(node).exists() or not os.listdir(world.public(node))
