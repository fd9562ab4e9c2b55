"""Each node is read no more often than the safety rules need (issue 20, item 3), counted on a
real 3-node OpenSSH fleet (``keysyncd.io.remote.sftpmeter``: full reads of a node's view,
SFTP round trips).

What the rules need, per node and action:

- before the gate, one read: it is the node's verification when it already holds the
  current state (SPEC rule 1); a node written to catch up is read back once more (section 3:
  in sync only after read-back);
- after the promotion, one read-back of what it wrote: the plan comes from the view
  verified before the gate (keysyncd holds the lock and is the one writer, rule 7, and
  nothing was written there since);
- JWS: one read to plan, one read-back after phase 1 where phase 1 wrote (the gate needs
  every node verified holding every public key), one after phase 2 where phase 2 wrote.

The counts are exact: a read more (an inspect that reads again) or less (a write not read
back) fails here.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from keysyncd.commands.cli import main
from keysyncd.io.remote.fanout import Fanout
from keysyncd.io.remote.sftpmeter import Traffic, metered
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet

NODES = ("node1", "node2", "node3")


def run(config: Path, *args: str) -> int:
    return main(["-c", str(config), *args])


def counted(config: Path, *args: str, expect: int = 0) -> dict[str, Traffic]:
    """Run one command; return each node's traffic in it."""
    with metered() as seen:
        assert run(config, *args) == expect
    return seen


def reads(seen: dict[str, Traffic]) -> dict[str, int]:
    return {name: seen[name].reads for name in sorted(seen)}


def configured(fleet: Fleet, root: Path, **repository: object) -> Path:
    """A repository on every node (``repository``: its fields), initialised."""
    config = fleet_config(fleet, root, dict(repository))
    document = yaml.safe_load(config.read_text())
    if repository.get("kind", "fernet") != "fernet":
        document["repositories"][0].pop("max_active_keys")
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    assert run(config, "init") == 0
    return config


def test_a_fernet_rotation_reads_each_node_in_sync_twice(fleet: Fleet, tmp_path: Path) -> None:
    """In sync before the gate: one read (its verification), one read-back after the
    promotion's write. The path that read every node at every inspect and verify read each
    four times, in more round trips."""
    config = configured(fleet, tmp_path / "ctl")
    seen = counted(config, "rotate")
    assert reads(seen) == dict.fromkeys(NODES, 2)
    Fanout.keep_views = False  # the path before (bench/rotate_reads.py compares both)
    try:
        before = counted(config, "rotate")
    finally:
        Fanout.keep_views = True
    assert reads(before) == dict.fromkeys(NODES, 4)
    assert all(seen[name].round_trips < before[name].round_trips for name in NODES)


def test_a_node_that_lagged_is_read_back_once_more(fleet: Fleet, tmp_path: Path) -> None:
    """node2 lost its staged key: it is written and read back before the gate (rule 1),
    then the promotion plans from that read-back."""
    config = configured(fleet, tmp_path / "ctl")
    (fleet.node("node2").directory / "0").unlink()
    seen = counted(config, "rotate")
    assert reads(seen) == {"node1": 2, "node2": 3, "node3": 2}
    assert run(config, "verify") == 0


def test_a_sync_with_nothing_to_do_reads_each_node_once(fleet: Fleet, tmp_path: Path) -> None:
    config = configured(fleet, tmp_path / "ctl")
    assert reads(counted(config, "sync")) == dict.fromkeys(NODES, 1)


def test_a_credential_rotation_reads_each_node_in_sync_twice(fleet: Fleet, tmp_path: Path) -> None:
    true = shutil.which("true") or "/bin/true"
    hooks = {"after_rotate": [[true]]}  # credential keys retire on a migration only
    config = configured(fleet, tmp_path / "ctl", name="creds", kind="credential", hooks=hooks)
    assert reads(counted(config, "rotate")) == dict.fromkeys(NODES, 2)


@pytest.fixture
def jws(make_fleet: Callable[..., Fleet], tmp_path: Path) -> tuple[Fleet, Path]:
    fleet = make_fleet(3)
    repository = {"kind": "jws", "token_expiration": 2, "allow_expired_window": 0}
    return fleet, configured(fleet, tmp_path / "ctl", **repository)


def test_a_jws_rotation_reads_each_node_once_per_write_phase(jws: tuple[Fleet, Path]) -> None:
    """Every node gets new public keys (phase 1, read back for the gate) and its new
    private key (phase 2, read back): three reads, the first to plan."""
    _, config = jws
    assert reads(counted(config, "rotate")) == dict.fromkeys(NODES, 3)


def test_a_jws_sync_reads_again_only_the_nodes_it_wrote(jws: tuple[Fleet, Path]) -> None:
    """In sync: one read each. A public directory open to everyone is fixed in phase 2
    only: that node is read back once, after phase 2 (phase 1 had nothing to do there)."""
    fleet, config = jws
    assert reads(counted(config, "sync")) == dict.fromkeys(NODES, 1)
    (fleet.node("node2").directory / "public").chmod(0o777)
    assert reads(counted(config, "sync")) == {"node1": 1, "node2": 2, "node3": 1}
    assert (fleet.node("node2").directory / "public").stat().st_mode & 0o777 == 0o700
    assert reads(counted(config, "verify")) == dict.fromkeys(NODES, 1)
