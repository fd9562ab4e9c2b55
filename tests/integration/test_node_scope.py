"""Issue 24 items 2 and 3 on a real sshd fleet.

2. ``sync --node`` repairs one node and never changes the controller's repository: a
   retirement that is due waits for a whole-fleet sync (the other nodes stay in sync); a dry
   run exits with the code the real run would.
3. ``status`` judges every node against the controller's current generation: a node
   verified before the controller changed is ``stale``; each line shows the last check and
   the last time the node was in sync. Whole lines are compared.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from keysyncd.commands.cli import main
from keysyncd.core.journal import PendingRotation, RepositoryState
from keysyncd.core.keyring import digest_of
from keysyncd.core.times import rfc3339
from keysyncd.io.local.state import load_state, save_state
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.jws_world import World
from tests.keystone_compat import fernet_rotate

REPOSITORY = "fernet-tokens"
RETENTION = {"token_expiration": 1, "allow_expired_window": 2}  # 3 s from confirmation


def run(config: Path, *args: str) -> int:
    return main(["-c", str(config), *args])


def files_of(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def journal(config: Path) -> RepositoryState:
    return load_state(config.parent / "state", REPOSITORY)


def lines(out: str, start: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(start)]


def node_line(state: RepositoryState, node: str, status: str, why: str = "") -> str:
    """Return the whole ``status`` line expected for ``node``, its times from the journal."""
    record = state.nodes[node]
    return (
        f"  node {node}: {status} (last check {rfc3339(record.checked_at)}, last in sync "
        f"{rfc3339(record.last_verified_at)})" + (f": {why}" if why else "")
    )


@pytest.fixture
def retirement_due(fleet: Fleet, tmp_path: Path) -> Path:
    """Two quick rotations keep key 1 beyond max_active_keys (3) until its retention ran
    out; after the wait its retirement is due at the next whole-fleet sync."""
    config = fleet_config(fleet, tmp_path / "ctl", repository=RETENTION)
    assert run(config, "init") == 0
    assert run(config, "rotate") == 0
    assert run(config, "rotate") == 0
    assert sorted(os.listdir(tmp_path / "ctl" / "keys")) == ["0", "1", "2", "3"]
    time.sleep(3.2)
    return config


def test_sync_node_never_changes_the_controller_and_a_fleet_sync_retires(
    retirement_due: Path, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    config, keys = retirement_due, retirement_due.parent / "keys"
    capsys.readouterr()
    assert run(config, "sync", "--dry-run") == 0
    assert f"{REPOSITORY}: would retire keys [1]: no live token can need them" in lines(
        capsys.readouterr().out, REPOSITORY
    )
    (fleet.node("node2").directory / "0").unlink()  # node2 drifted: it lost its staged key
    before, generation = files_of(keys), journal(config).generation
    left = (
        f"{REPOSITORY}: keys [1] may be retired now: 'keysyncd sync' without --node retires "
        "them (sync --node changes only its node, never the controller)"
    )

    assert run(config, "sync", "--node", "node2", "--dry-run") == 0
    assert lines(capsys.readouterr().out, REPOSITORY) == [
        f"{REPOSITORY}: sync dry-run (the real sync would end ok)",
        left,
    ]
    assert run(config, "sync", "--node", "node2") == 0
    out = capsys.readouterr().out
    assert left in lines(out, REPOSITORY), out
    assert files_of(keys) == before  # key 1 is still there: nothing retired on the controller
    assert journal(config).generation == generation
    for node in fleet.nodes:  # node2 repaired, the others untouched and still in sync
        assert files_of(node.directory) == before, node.name
    assert run(config, "verify") == 0
    assert run(config, "status") == 0  # every node in sync with the current generation

    assert run(config, "sync") == 0  # the whole fleet: now the retirement happens
    assert sorted(os.listdir(keys)) == ["0", "2", "3"]
    assert journal(config).generation == generation + 1
    for node in fleet.nodes:
        assert files_of(node.directory) == files_of(keys), node.name
    assert run(config, "status") == 0


def test_sync_node_of_the_only_node_retires_nothing_either(
    make_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    """One node: its clock alone vouches for the controller's (a majority of one), so only
    the rule itself keeps ``sync --node`` from retiring (with more nodes, one node's clock is
    too few to time a retirement anyway). The whole-fleet sync retires."""
    fleet = make_fleet(1)
    config = fleet_config(fleet, tmp_path / "ctl", repository=RETENTION)
    keys = tmp_path / "ctl" / "keys"
    assert run(config, "init") == 0
    assert run(config, "rotate") == 0
    assert run(config, "rotate") == 0
    time.sleep(3.2)
    before, generation = files_of(keys), journal(config).generation
    assert sorted(before) == ["0", "1", "2", "3"]
    assert run(config, "sync", "--node", "node1") == 0
    assert files_of(keys) == before and journal(config).generation == generation
    assert run(config, "sync") == 0
    assert sorted(os.listdir(keys)) == ["0", "2", "3"]
    assert files_of(fleet.node("node1").directory) == files_of(keys)


def test_a_dry_run_exits_with_the_code_of_the_real_run(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = fleet_config(fleet, tmp_path / "ctl")
    assert run(config, "init") == 0
    node2 = fleet.node("node2").directory
    (node2 / "0").unlink()
    capsys.readouterr()
    # every node would be in sync after it: both 0 (node2 differs now, and would be pushed)
    assert run(config, "sync", "--dry-run") == 0
    dry = capsys.readouterr().out
    assert f"{REPOSITORY}: sync dry-run (the real sync would end ok)" in lines(dry, REPOSITORY)
    assert run(config, "sync") == 0

    (node2 / "0").unlink()
    fleet.stop_node("node3")
    try:
        for scope in ([], ["--node", "node3"]):
            assert run(config, "sync", *scope, "--dry-run") == 1, scope
            dry = capsys.readouterr().out
            would = "partial" if not scope else "failed"
            assert f"{REPOSITORY}: sync dry-run (the real sync would end {would})" in lines(
                dry, REPOSITORY
            )
        assert run(config, "rotate", "--dry-run") == 1
        assert f"{REPOSITORY}: outcome dry-run (the real rotate would end deferred)" in lines(
            capsys.readouterr().out, REPOSITORY
        )
        assert run(config, "rotate") == 1  # deferred: node3 is down
        assert run(config, "sync", "--node", "node3") == 1
        assert run(config, "sync") == 1  # node2 repaired, node3 failed: partial
    finally:
        fleet.start_node("node3")
    assert run(config, "sync", "--dry-run") == 0
    assert run(config, "sync") == 0


def test_status_shows_stale_nodes_after_the_controller_changed(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """keystone-manage fernet_rotate run by hand on the controller: the keys on disk are
    newer than every node (all stale); ``sync --node node1`` records them (generation 2) and
    pushes them to node1 only (node2 and node3 stay stale); a verify finds them differing
    (the last check moves on, the last time in sync does not); a fleet sync ends it."""
    config = fleet_config(fleet, tmp_path / "ctl")
    assert run(config, "init") == 0
    fernet_rotate(str(tmp_path / "ctl" / "keys"), 3)
    capsys.readouterr()
    assert run(config, "status") == 1
    out, state = capsys.readouterr().out, journal(config)
    changed = (
        "last verified holding generation 1; the controller's keys changed since (keysyncd "
        "records and pushes them on its next sync or check)"
    )
    assert lines(out, "  node ") == [
        node_line(state, name, "stale", changed) for name in ("node1", "node2", "node3")
    ]
    assert lines(out, "ATTENTION") == [
        f"ATTENTION: {REPOSITORY}: node {name} is stale: {changed}"
        for name in ("node1", "node2", "node3")
    ]

    assert run(config, "sync", "--node", "node1") == 0
    state = journal(config)
    assert state.generation == 2
    capsys.readouterr()
    assert run(config, "status") == 1
    out = capsys.readouterr().out
    behind = "last verified holding generation 1; the controller is at generation 2"
    assert lines(out, "  node ") == [
        node_line(state, "node1", "in_sync"),
        node_line(state, "node2", "stale", behind),
        node_line(state, "node3", "stale", behind),
    ]
    assert lines(out, "ATTENTION") == [
        f"ATTENTION: {REPOSITORY}: node node2 is stale: {behind}",
        f"ATTENTION: {REPOSITORY}: node node3 is stale: {behind}",
    ]

    time.sleep(1.1)  # the next check is a later second than the last time in sync
    assert run(config, "verify") == 1  # node2 and node3 lack the new keys
    state = journal(config)
    assert state.nodes["node2"].checked_at != state.nodes["node2"].last_verified_at
    capsys.readouterr()
    assert run(config, "status") == 1
    out = capsys.readouterr().out
    assert lines(out, "  node ") == [
        node_line(state, "node1", "in_sync"),
        node_line(state, "node2", "differs"),
        node_line(state, "node3", "differs"),
    ]
    assert lines(out, "ATTENTION") == [
        f"ATTENTION: {REPOSITORY}: node node2 differs from the controller",
        f"ATTENTION: {REPOSITORY}: node node3 differs from the controller",
    ]

    assert run(config, "sync") == 0
    state = journal(config)
    capsys.readouterr()
    assert run(config, "status") == 0
    assert lines(capsys.readouterr().out, "  node ") == [
        node_line(state, "node1", "in_sync"),
        node_line(state, "node2", "in_sync"),
        node_line(state, "node3", "in_sync"),
    ]


def test_jws_status_shows_a_node_stale_after_the_controller_changed(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same rule for a ``jws`` repository: a rotation run with a config that leaves
    node3 out (another controller's view of the fleet) moves the controller on; node3,
    verified before, is stale until a sync of the whole fleet."""
    assert run(world.path, "init") == 0
    document = yaml.safe_load(world.path.read_text())
    document["nodes"] = [n for n in document["nodes"] if n["name"] != "node3"]
    partial = world.path.with_name("without-node3.yaml")
    partial.write_text(yaml.safe_dump(document))
    assert run(partial, "rotate") == 0
    state = journal(world.path)
    capsys.readouterr()
    assert run(world.path, "status") == 1
    out = capsys.readouterr().out
    assert state.nodes["node3"].generation is not None
    behind = (
        f"last verified holding generation {state.nodes['node3'].generation}; the controller "
        f"is at generation {state.generation}"
    )
    assert lines(out, "  node ") == [
        node_line(state, "node1", "in_sync"),
        node_line(state, "node2", "in_sync"),
        node_line(state, "node3", "stale", behind),
    ]
    assert lines(out, "ATTENTION") == [f"ATTENTION: {REPOSITORY}: node node3 is stale: {behind}"]
    assert run(world.path, "sync") == 0
    assert run(world.path, "status") == 0


def test_sync_node_refuses_to_recover_an_interrupted_rotation(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rotation killed after it copied staged key 0 to the new primary 2: undoing it
    changes the controller's repository, which sync --node never does; it refuses and says
    what does (a whole-fleet sync, which rolls it back)."""
    config = fleet_config(fleet, tmp_path / "ctl")
    keys = tmp_path / "ctl" / "keys"
    assert run(config, "init") == 0
    staged = digest_of((keys / "0").read_bytes())
    (keys / "2").write_bytes((keys / "0").read_bytes())
    (keys / "2").chmod(0o600)
    state = journal(config)
    pending = PendingRotation(2, staged, "f" * 64, (), time.time())
    save_state(config.parent / "state", replace(state, pending=pending))
    before = files_of(keys)
    capsys.readouterr()
    assert run(config, "sync", "--node", "node1") == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"keysyncd: error: {REPOSITORY}: not synced: sync --node never changes the "
        "controller's repository, and an interrupted rotation must be finished first (roll "
        "back the interrupted rotation: remove key 2): run 'keysyncd sync' without --node"
    )
    assert files_of(keys) == before and journal(config).pending == pending
    assert run(config, "sync") == 0
    assert sorted(os.listdir(keys)) == ["0", "1"] and journal(config).pending is None
