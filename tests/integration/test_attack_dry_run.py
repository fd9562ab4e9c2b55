"""Attack: ``rotate --dry-run`` of every kind writes nothing anywhere (the controller's
state, reports, keys and JWS store; the nodes, not even a clock probe) and takes no lock:
it runs while another process holds it. Real OpenSSH fleet."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from keysyncd.actions import operations
from keysyncd.config import load_config
from keysyncd.io.local.lock import exclusive
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.integration.test_after_rotate import script, set_hooks
from tests.integration.test_rotate import run
from tests.jws_world import World, act


def snapshot(*roots: Path) -> dict[str, tuple[int, int, int, str]]:
    """Return every entry under ``roots``: mode, size, mtime (ns) and content digest."""
    found = {}
    for root in roots:
        for directory, subdirectories, files in os.walk(root):
            for name in [*subdirectories, *files, "."]:
                path = Path(directory, name)
                info = path.lstat()
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
                found[str(path)] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
    return found


@pytest.mark.parametrize("kind", ["fernet", "credential"])
def test_a_symmetric_dry_run_writes_nothing_and_takes_no_lock(
    fleet: Fleet, tmp_path: Path, kind: str
) -> None:
    root = tmp_path / "ctl"
    config = fleet_config(fleet, root, repository={"kind": kind, "max_active_keys": 3})
    assert run(config, "init") == 0
    (fleet.nodes[1].directory / "1").unlink()  # node2 lags: the dry run has work to show
    nodes = [node.directory.parent for node in fleet.nodes]
    with exclusive(load_config(config).state_dir, "attacker"):
        before = snapshot(root, *nodes)
        for command in (["rotate", "--dry-run"], ["sync", "--dry-run"]):
            assert run(config, *command) in (0, 1)
        assert snapshot(root, *nodes) == before


def test_a_jws_dry_run_writes_nothing_and_takes_no_lock(world: World) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    root = world.path.parent
    nodes = [node.directory.parent for node in world.fleet.nodes]
    with exclusive(world.config.state_dir, "attacker"):
        before = snapshot(root, *nodes)
        for command in (["rotate", "--dry-run"], ["sync", "--dry-run"]):
            assert run(world.path, *command) in (0, 1)
        assert snapshot(root, *nodes) == before


def test_a_jws_dry_run_runs_no_hook_while_a_migration_is_pending(
    world: World, tmp_path: Path
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    ran = tmp_path / "ran"
    set_hooks(
        world.path,
        before_rotate=[script(tmp_path / "before", f"echo before >> {ran}")],
        after_rotate=[script(tmp_path / "after", f"echo after >> {ran}; exit 3")],
        on_failure=[script(tmp_path / "failure", f"echo failure >> {ran}")],
    )
    assert run(world.path, "rotate") == 1  # partial: the migration is pending
    assert ran.read_text().split() == ["before", "after", "failure"]
    root = world.path.parent
    before = snapshot(root, *[node.directory.parent for node in world.fleet.nodes])
    assert run(world.path, "rotate", "--dry-run") in (0, 1)
    assert ran.read_text().split() == ["before", "after", "failure"], "a dry run ran a hook"
    assert snapshot(root, *[node.directory.parent for node in world.fleet.nodes]) == before
