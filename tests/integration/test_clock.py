"""A clock that agrees with the fleet (SPEC safety rule 10), against a real OpenSSH fleet.

The nodes' clock is this machine's; the controller's is the Run's (``time.time() + offset``),
so a controller one day ahead of its nodes, or behind its own journal, is a Run whose clock
says so. While the clock is not trusted nothing is retired or rotated, for every kind, and
the report, ``status`` and the metrics say why; everything resumes once the clocks agree.
Also: a report that cannot be written (report_dir on a full tmpfs) is kept in the journal and
written, marked late, once there is room, with the chain intact.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from keysyncd.actions import operations
from keysyncd.actions.context import ActionResult, Run
from keysyncd.commands.cli import main
from keysyncd.commands.views import needs_attention, status_of
from keysyncd.config import load_config
from keysyncd.core.vocabulary import Trigger
from keysyncd.io.local.lock import exclusive
from keysyncd.io.local.state import load_state
from keysyncd.testing import faults
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.jws_world import RETENTION, World
from tests.jws_world import act as act_now

DAY = 86400.0


def act_at(
    path: Path, offset: float, operation: Callable[..., ActionResult], *args: object
) -> ActionResult:
    """Run ``operation`` under the lock, as the CLI does, on a controller whose clock is
    ``offset`` seconds from the machine's (the nodes')."""
    config = load_config(path)
    run = Run(config, config.repositories[0], Trigger.CLI, clock=lambda: time.time() + offset)
    with exclusive(config.state_dir, "test"):
        return operation(run, *args)


def keys(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


def everywhere(fleet: Fleet, config: Path) -> dict[str, list[str]]:
    found = {node.name: keys(node.directory) for node in fleet.nodes}
    return found | {"controller": keys(config.parent / "keys")}


def metric(textfile: Path, name: str) -> float | None:
    match = re.search(rf'^{name}{{repository="fernet-tokens"}} (\S+)$', textfile.read_text(), re.M)
    return None if match is None else float(match[1])


def status(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["-c", str(config), "status"])
    return code, capsys.readouterr().out


def fernet_fleet(fleet: Fleet, root: Path, **sections: object) -> Path:
    """A fernet repository whose demoted keys are due one second after their confirmation,
    and whose max_active_keys (2) makes every rotation leave one key to retire."""
    repository = {"max_active_keys": 2, "token_expiration": 1, "allow_expired_window": 0}
    return fleet_config(fleet, root, repository=repository, **sections)


def test_a_controller_a_day_ahead_retires_and_rotates_nothing_until_the_clocks_agree(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    textfile = tmp_path / "metrics" / "keysyncd.prom"
    config = fernet_fleet(fleet, tmp_path / "ctl", metrics={"textfile": str(textfile)})
    assert main(["-c", str(config), "init"]) == 0
    assert main(["-c", str(config), "rotate"]) == 0
    time.sleep(1.2)  # key 1 was confirmed demoted everywhere: its retirement is due
    before = everywhere(fleet, config)
    assert set(map(tuple, before.values())) == {("0", "1", "2")}

    ahead = act_at(config, DAY, operations.sync)
    assert everywhere(fleet, config) == before, "a due retirement does not happen"
    assert not ahead.ok
    report = json.loads((config.parent / "reports" / f"{ahead.report.id}.json").read_text())
    clock = report["details"]["clock"]
    assert clock["trusted"] is False and clock["observed_nodes"] == 3
    assert abs(clock["skew"] - DAY) < 60, clock
    assert "86400s ahead of the median clock of 3 nodes" in clock["reason"]
    assert any(m.startswith("clock not trusted: ") for m in report["messages"]), report
    assert metric(textfile, "keysyncd_clock_untrusted") == 1
    skew = metric(textfile, "keysyncd_clock_skew_seconds")
    assert skew is not None and abs(skew - DAY) < 60
    code, out = status(config, capsys)
    assert code == 1 and "clock not trusted" in out and "ahead of the median clock" in out

    deferred = act_at(config, DAY, operations.rotate)
    assert deferred.outcome == "deferred"
    assert any("clock is not trusted" in message for message in deferred.messages)
    assert everywhere(fleet, config) == before, "nothing rotated anywhere"

    back = act_at(config, 0.0, operations.sync)  # the clocks agree again: it resumes
    assert back.ok, back.messages
    assert set(map(tuple, everywhere(fleet, config).values())) == {("0", "2")}
    assert metric(textfile, "keysyncd_clock_untrusted") == 0
    assert status(config, capsys)[0] == 0
    assert main(["-c", str(config), "rotate"]) == 0
    assert keys(config.parent / "keys") == ["0", "2", "3"]


def test_a_controller_behind_its_own_journal_retires_and_rotates_nothing(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The controller rotates at +200 s (within clock.max_skew of the nodes), then its clock
    steps back 400 s: still within max_skew of the nodes, but behind what it recorded."""
    config = fernet_fleet(fleet, tmp_path / "ctl")
    assert main(["-c", str(config), "init"]) == 0
    assert act_at(config, 200.0, operations.rotate).ok
    time.sleep(1.2)
    before = everywhere(fleet, config)

    synced = act_at(config, -200.0, operations.sync)
    assert everywhere(fleet, config) == before, "no retirement"
    assert any("stepped back" in message for message in synced.messages), synced.messages
    rotated = act_at(config, -200.0, operations.rotate)
    assert rotated.outcome == "deferred" and everywhere(fleet, config) == before
    code, out = status(config, capsys)  # the machine's clock, 200 s behind the journal too
    assert code == 1 and "stepped back" in out

    forward = act_at(config, 250.0, operations.sync)
    assert forward.ok, forward.messages
    assert set(map(tuple, everywhere(fleet, config).values())) == {("0", "2")}
    assert act_at(config, 250.0, operations.rotate).ok
    loaded = load_config(config)
    now = time.time() + 250.0
    repository = loaded.repositories[0]
    assert needs_attention(repository, status_of(loaded, repository, now), now) == []


def jws_act_at(
    world: World, offset: float, operation: Callable[..., ActionResult], *args: object
) -> ActionResult:
    return act_at(world.path, offset, operation, *args)


def public_keys(world: World) -> dict[str, list[str]]:
    return {node.name: sorted(os.listdir(world.public(node.name))) for node in world.fleet.nodes}


def test_jws_a_controller_a_day_ahead_rotates_and_retires_nothing(world: World) -> None:
    """The same rule for kind jws: no new pair, no private.pem replaced, no public key gone."""
    assert act_now(world, operations.init, False).ok
    assert act_now(world, operations.rotate, False, False).ok
    time.sleep(RETENTION + 0.3)  # the first public keys are due for retirement
    publics = public_keys(world)
    privates = {node.name: world.private_digest(node.name) for node in world.fleet.nodes}
    assert all(len(names) == 6 for names in publics.values()), publics

    ahead = jws_act_at(world, DAY, operations.rotate, False, False)
    assert ahead.outcome == "deferred"
    assert any("clock is not trusted" in message for message in ahead.messages)
    assert ahead.report is not None and ahead.report.details["clock"]["trusted"] is False
    synced = jws_act_at(world, DAY, operations.sync, None, False, False)
    assert any(m.startswith("clock not trusted: ") for m in synced.messages)
    assert public_keys(world) == publics, "no public key retired"
    assert {n.name: world.private_digest(n.name) for n in world.fleet.nodes} == privates

    back = jws_act_at(world, 0.0, operations.sync, None, False, False)
    assert back.ok, back.messages
    assert all(len(names) == 3 for names in public_keys(world).values())
    assert jws_act_at(world, 0.0, operations.rotate, False, False).ok
    assert {n.name: world.private_digest(n.name) for n in world.fleet.nodes} != privates


def test_a_report_that_cannot_be_written_is_kept_in_the_journal_and_written_late(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not faults.can_mount():
        pytest.skip("a full report_dir is a tiny tmpfs: needs root and mount(8)")
    root = tmp_path / "ctl"
    config = fleet_config(fleet, root)
    with faults.tiny_tmpfs(root / "reports"):  # state_dir stays on another file system
        assert main(["-c", str(config), "init"]) == 0
        filler = faults.fill_up(root / "reports")
        capsys.readouterr()
        assert main(["-c", str(config), "rotate"]) == 1, "the rotation happened, unreported"
        out = capsys.readouterr().out
        assert "the report could not be written (cannot write report" in out, out
        assert "disk full" in out and "NOT WRITTEN" in out
        assert keys(root / "keys") == ["0", "1", "2"]
        assert all(keys(node.directory) == ["0", "1", "2"] for node in fleet.nodes)
        state = load_state(root / "state", "fernet-tokens")
        assert [r["action"] for r in state.unwritten_reports] == ["rotate"]
        assert state.last_action is not None and state.last_action.action == "rotate"
        rotation = state.unwritten_reports[0]
        assert main(["-c", str(config), "verify"]) == 1  # still full: two kept now
        assert len(load_state(root / "state", "fernet-tokens").unwritten_reports) == 2
        code, out = status(config, capsys)
        assert code == 1 and "2 reports not yet written to report_dir" in out

        filler.unlink()  # space is back: the next action writes them, marked late
        assert main(["-c", str(config), "verify"]) == 0
        assert load_state(root / "state", "fernet-tokens").unwritten_reports == ()
        written = [json.loads(p.read_text()) for p in sorted((root / "reports").glob("2*.json"))]
        assert [r["action"] for r in written] == ["init", "rotate", "verify", "verify"]
        late = written[1]
        assert late["started_at"] == rotation["started_at"]
        assert late["ended_at"] == rotation["ended_at"], "the late report keeps its times"
        assert late["written_late_at"] > late["ended_at"]
        assert "written_late_at" in written[2] and "written_late_at" not in written[3]
        capsys.readouterr()
        assert main(["-c", str(config), "report", "verify-chain"]) == 0
        out = capsys.readouterr().out
        assert "chain of 4 reports: intact, 2 written late" in out, out
        assert f"LATE: report {late['id']} was written at {late['written_late_at']}" in out


def test_a_clock_probe_a_killed_keysyncd_left_is_removed_by_the_next_push(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A kill while a node's clock is read leaves its empty probe on a node in sync: the
    next sync removes it (phase 1 removes temp files only on nodes that differ)."""
    config = fernet_fleet(fleet, tmp_path / "ctl")
    assert main(["-c", str(config), "init"]) == 0
    node = fleet.node("node2").directory
    (node / ".keysyncd-clock-0123456789abcdef.tmp").write_bytes(b"")
    assert main(["-c", str(config), "verify"]) == 0
    assert main(["-c", str(config), "sync"]) == 0
    assert sorted(os.listdir(node)) == ["0", "1"]
