"""after_rotate blocks until it succeeds, one outcome everywhere, and the promotion gate with
a node that timed out, against a real OpenSSH fleet.

- a hook killed with SIGKILL blocks the next rotations, which stay blocked (and the block
  stays in the journal) while the hook still fails, until it succeeds;
- a failed after_rotate is ``partial`` in the report, the index, the journal, the metrics,
  on_failure's input, the CLI text and ``--json`` alike (decided once, before the commit);
- a rotation without ``--force`` while one node times out (its sshd frozen with SIGSTOP) is
  deferred, and nothing changes on the controller or any node.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import yaml

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.faults import can_mount, unmount
from keysyncd.testing.fleet import Fleet
from tests.integration.test_rotate import everything, reports


def run(config: Path, *args: str) -> int:
    return main(["-c", str(config), *args])


def journal(config: Path) -> dict:
    path = config.parent / "state" / "repositories" / "fernet-tokens.json"
    return json.loads(path.read_text())


def read_only(tmp_path: Path, directory: Path) -> str:
    """Return a before_rotate hook that makes ``directory`` read-only (a bind mount, EROFS
    for every writer, root too; the caller unmounts it), leaving what it holds as it was."""
    if not can_mount():
        pytest.skip("needs root and mount (a read-only bind mount)")
    remount = f"mount --bind {directory} {directory} && mount -o remount,bind,ro {directory}"
    return script(tmp_path / "read-only.sh", remount)


def set_hooks(config: Path, **hooks: object) -> None:
    document = yaml.safe_load(config.read_text())
    document["repositories"][0]["hooks"] = {"timeout": 30, **hooks}
    config.write_text(yaml.safe_dump(document))


def script(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def ready(fleet: Fleet, tmp_path: Path) -> tuple[Fleet, Path]:
    config = fleet_config(fleet, tmp_path / "ctl")
    assert run(config, "init") == 0
    return fleet, config


def test_a_hook_killed_with_sigkill_blocks_until_it_succeeds(
    ready: tuple[Fleet, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL of the hook is a failure like any other; a second rotate while it still fails
    retries it, stays blocked, changes nothing, and leaves the block in the journal."""
    fleet, config = ready
    hook = script(tmp_path / "migrate", "kill -9 $$")
    set_hooks(config, after_rotate=[hook])
    assert run(config, "rotate") == 1
    block = journal(config)["hook_block"]
    assert block is not None and block["status"] == -9, block
    for _ in range(2):  # each rotate retries the hook first; still killed: still blocked
        before = everything(fleet, config)
        capsys.readouterr()
        assert run(config, "rotate") == 1
        out = capsys.readouterr().out
        assert f"rotation blocked: after_rotate hook '{hook}' was killed by signal 9" in out
        assert "None" not in out
        assert everything(fleet, config) == before, "a blocked rotation changed keys"
        assert journal(config)["hook_block"] == {**block, "at": journal(config)["hook_block"]["at"]}
        assert reports(config, "rotate")[-1]["outcome"] == "deferred"
    script(tmp_path / "migrate", "exit 0")
    assert run(config, "rotate") == 0
    assert journal(config)["hook_block"] is None
    local = everything(fleet, config)["controller"]
    assert sorted(local) == ["0", "1", "2", "3"]


def test_a_failed_after_rotate_is_partial_everywhere(
    ready: tuple[Fleet, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The outcome is final before the commit: the report, the index (report list
    --outcome), the journal's last action, the metrics, on_failure's stdin, the CLI's text
    and its --json all say partial."""
    _, config = ready
    told = tmp_path / "on_failure.json"
    textfile = tmp_path / "metrics" / "keysyncd.prom"
    textfile.parent.mkdir()
    document = yaml.safe_load(config.read_text())
    document["metrics"] = {"textfile": str(textfile)}
    config.write_text(yaml.safe_dump(document))
    migrate = tmp_path / "migrate"
    set_hooks(
        config,
        after_rotate=[script(migrate, "exit 3")],
        on_failure=[script(tmp_path / "page", f"cat > {told}")],
    )
    capsys.readouterr()
    assert run(config, "rotate") == 1
    text = capsys.readouterr().out
    [report] = reports(config, "rotate")
    assert report["outcome"] == "partial", report
    assert f"fernet-tokens: outcome partial (report {report['id']})" in text, text
    last = journal(config)["last_action"]
    assert (last["action"], last["outcome"], last["report"]) == ("rotate", "partial", report["id"])
    stdin = json.loads(told.read_text())
    assert (stdin["id"], stdin["outcome"]) == (report["id"], "partial")
    assert run(config, "--json", "report", "list", "--outcome", "partial") == 0
    listed = json.loads(capsys.readouterr().out)["reports"]
    assert [entry["id"] for entry in listed] == [report["id"]]
    assert run(config, "--json", "report", "list", "--outcome", "ok") == 0
    assert report["id"] not in capsys.readouterr().out
    assert "rotate" not in journal(config)["last_success"]  # it did not succeed
    # the metrics come from that journal (written by the same commit): the keys did rotate
    # (last rotation time), and nothing records the rotate action as a success
    metrics = textfile.read_text()
    assert f'keysyncd_generation{{repository="fernet-tokens"}} {report["generation"]}' in metrics

    script(migrate, "exit 0")
    assert run(config, "rotate") == 0  # the retried hook succeeds: unblocked, rotated
    script(migrate, "exit 3")
    capsys.readouterr()
    assert run(config, "--json", "rotate") == 1
    answer = json.loads(capsys.readouterr().out)
    report = reports(config, "rotate")[-1]
    assert report["outcome"] == "partial", report
    assert [r["outcome"] for r in answer["reports"]] == ["partial"]
    [repository] = answer["repositories"]
    assert repository["outcome"] == "partial"
    assert [r["outcome"] for r in repository["results"]] == ["partial"]
    assert json.loads(told.read_text())["outcome"] == "partial"


def test_a_node_that_timed_out_defers_the_rotation_and_nothing_changes(
    make_fleet, tmp_path: Path
) -> None:
    """Without --force, one node whose sshd does not answer (frozen with SIGSTOP: the
    connection is accepted, no banner comes) is ``timeout``, not verified: deferred."""
    fleet = make_fleet(3)
    config = fleet_config(fleet, tmp_path / "ctl")
    document = yaml.safe_load(config.read_text())
    document["ssh"].update(connect_timeout=2, operation_timeout=2)
    config.write_text(yaml.safe_dump(document))
    assert run(config, "init") == 0
    node2 = fleet.node("node2")
    assert node2.pid is not None
    before = everything(fleet, config)
    os.kill(node2.pid, signal.SIGSTOP)
    try:
        assert run(config, "rotate") == 1
    finally:
        os.kill(node2.pid, signal.SIGCONT)
    report = reports(config, "rotate")[-1]
    assert report["nodes"]["node2"]["reason"] == "timeout", report["nodes"]["node2"]
    assert report["outcome"] == "deferred" and report["forced"] is False
    assert any("node2 (timeout)" in message for message in report["messages"])
    assert everything(fleet, config) == before, "a deferred rotation changed keys"
    assert run(config, "rotate") == 0  # node2 answers again: the rotation goes ahead


def test_an_after_rotate_skipped_by_a_node_failure_blocks_until_it_has_run(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A rotation promoted past the gate whose push then fails on one node (before_rotate
    makes its directory read-only: the gate, decided again after the hook, still verifies
    it) skips after_rotate: that migration is pending like a failed one, so the next rotate
    runs it first, and only then rotates (SPEC rule 12)."""
    config = fleet_config(fleet, tmp_path / "ctl")
    assert main(["-c", str(config), "init"]) == 0
    node2 = fleet.node("node2").directory
    log = tmp_path / "after.log"
    after = script(tmp_path / "after.sh", f"echo ran >> {log}")
    set_hooks(config, before_rotate=[[read_only(tmp_path, node2)]], after_rotate=[[after]])
    try:
        assert main(["-c", str(config), "rotate"]) == 1
    finally:
        unmount(node2)
    first = journal(config)
    assert not log.exists(), "after_rotate must not run while node2 lacks the new keys"
    assert first["hook_block"]["status"] is None
    assert first["hook_block"]["problem"].startswith("has not run yet")
    set_hooks(config, after_rotate=[[after]])
    assert main(["-c", str(config), "rotate"]) == 0
    second = journal(config)
    # the pending migration ran first (retry), then the rotation and its own after_rotate
    assert log.read_text().splitlines() == ["ran", "ran"]
    assert second["hook_block"] is None
    assert second["generation"] > first["generation"]
