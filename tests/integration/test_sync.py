"""Distribution against a real OpenSSH fleet: sync, verify, failures isolated per node."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet, can_mount
from tests.keystone_compat import load_keys, multifernet


def files_of(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def inodes_of(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        n: ((directory / n).stat().st_ino, (directory / n).stat().st_mtime_ns)
        for n in os.listdir(directory)
    }


def reports(root: Path, action: str) -> list[dict]:
    return [
        json.loads(p.read_text()) for p in sorted((root / "reports").glob(f"*-{action}-*.json"))
    ]


@pytest.fixture
def ready(fleet5: Fleet, tmp_path: Path) -> tuple[Fleet, Path]:
    """A 5-node fleet and an initialised controller config (keys pushed everywhere)."""
    config = fleet_config(fleet5, tmp_path / "ctl")
    assert main(["-c", str(config), "init"]) == 0
    return fleet5, config


def run(config: Path, *args: str) -> int:
    return main(["-c", str(config), *args])


def test_sync_then_verify_every_node_byte_for_byte(ready: tuple[Fleet, Path]) -> None:
    fleet, config = ready
    local = config.parent / "keys"
    assert run(config, "rotate") == 0
    assert run(config, "sync") == 0
    assert run(config, "verify") == 0
    for node in fleet.nodes:
        assert files_of(node.directory) == files_of(local)
        assert stat.S_IMODE(node.directory.stat().st_mode) == 0o700
        for name in os.listdir(node.directory):
            assert stat.S_IMODE((node.directory / name).stat().st_mode) == 0o600
    before = {node.name: inodes_of(node.directory) for node in fleet.nodes}
    assert run(config, "sync") == 0
    # a second sync transfers nothing: same inodes and mtimes, report shows no changes
    assert {node.name: inodes_of(node.directory) for node in fleet.nodes} == before
    last = reports(config.parent, "sync")[-1]
    assert {n["status"] for n in last["nodes"].values()} == {"in_sync"}
    assert all(not n["changes"] for n in last["nodes"].values())


def test_verify_json_prints_only_json(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    capsys.readouterr()
    assert run(config, "verify", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    (report,) = document["reports"]  # the verify report; "repositories": one summary each
    assert [(r["name"], r["outcome"]) for r in document["repositories"]] == [
        (report["repository"], "ok")
    ]
    [result] = document["repositories"][0]["results"]
    assert result["report_id"] == report["id"]
    assert set(result["nodes"]) == {n.name for n in fleet.nodes}
    assert "nodes" not in report  # each node once: in the result
    assert report["outcome"] == "ok"


def test_stopped_node_is_isolated_and_converges_later(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    local = config.parent / "keys"
    fleet.stop_node("node3")
    assert run(config, "rotate", "--force") == 1  # forced past the dead node; outcome partial
    capsys.readouterr()
    assert run(config, "sync") == 1
    out = capsys.readouterr().out
    assert "node3  failed" in out and "unreachable" in out
    for node in fleet.nodes:
        if node.name != "node3":
            assert files_of(node.directory) == files_of(local)
    assert files_of(fleet.node("node3").directory) != files_of(local)
    last = reports(config.parent, "sync")[-1]
    assert last["nodes"]["node3"]["reason"] == "unreachable"
    assert last["outcome"] == "partial"
    fleet.start_node("node3")
    assert run(config, "sync") == 0
    assert files_of(fleet.node("node3").directory) == files_of(local)


def test_changed_host_key_fails_that_node_only_and_writes_nothing(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    victim = fleet.node("node2")
    fleet.rekey_node("node2")
    before = inodes_of(victim.directory)
    assert run(config, "rotate", "--force") == 1
    capsys.readouterr()
    assert run(config, "sync") == 1
    out = capsys.readouterr().out
    assert "node2  failed" in out and "host_key: host key of" in out
    assert inodes_of(victim.directory) == before
    local = files_of(config.parent / "keys")
    for node in fleet.nodes:
        if node.name != "node2":
            assert files_of(node.directory) == local
    assert reports(config.parent, "sync")[-1]["nodes"]["node2"]["reason"] == "host_key"


@pytest.mark.parametrize("fault", ["readonly", "full"])
def test_unwritable_node_is_reported_and_keeps_its_keys(
    ready: tuple[Fleet, Path], fault: str
) -> None:
    fleet, config = ready
    if fault == "full" and not can_mount():
        pytest.skip("a full filesystem needs a tmpfs mount, which needs root")
    victim = fleet.node("node4")
    before = files_of(victim.directory)
    make_fault: Callable = fleet.make_readonly if fault == "readonly" else fleet.make_full
    with make_fault("node4"):
        assert run(config, "rotate", "--force") == 1
        last = reports(config.parent, "rotate")[-1]
        expected_reason = "permission" if fault == "readonly" else "disk_full"
        assert last["nodes"]["node4"]["reason"] == expected_reason
        assert last["nodes"]["node4"]["status"] == "failed"
        visible = {n: c for n, c in files_of(victim.directory).items() if n.isdigit()}
        assert visible == {n: c for n, c in before.items() if n.isdigit()}
        # keystone there still loads its two keys, and builds its MultiFernet from them
        # (cryptography 51's MultiFernet no longer exposes its keys: count what keystone loads)
        assert len(load_keys(str(victim.directory))) == 2
        multifernet(str(victim.directory))
    assert run(config, "sync") == 0
    assert files_of(victim.directory) == files_of(config.parent / "keys")


def test_node_path_override(make_fleet: Callable[..., Fleet], tmp_path: Path) -> None:
    fleet = make_fleet(3)
    custom = fleet.root / "node2" / "elsewhere"
    custom.mkdir(mode=0o700)
    config = fleet_config(fleet, tmp_path / "ctl")
    text = config.read_text().replace(str(fleet.node("node2").directory), str(custom))
    config.write_text(text)
    assert run(config, "init") == 0
    assert files_of(custom) == files_of(tmp_path / "ctl" / "keys")
    assert files_of(fleet.node("node2").directory) == {}


def test_single_node_sync(ready: tuple[Fleet, Path]) -> None:
    fleet, config = ready
    fleet.stop_node("node1")
    assert run(config, "rotate", "--force") == 1
    fleet.start_node("node1")
    assert run(config, "sync", "--node", "node1") == 0
    last = reports(config.parent, "sync")[-1]
    assert set(last["nodes"]) == {"node1"}


def test_diverged_node_is_reported_and_untouched(ready: tuple[Fleet, Path]) -> None:
    fleet, config = ready
    victim = fleet.node("node5")
    # someone ran keystone-manage fernet_rotate on the node itself: it is ahead of us
    os.rename(victim.directory / "0", victim.directory / "2")
    (victim.directory / "0").write_bytes((config.parent / "keys" / "1").read_bytes()[::-1])
    before = files_of(victim.directory)
    assert run(config, "sync") == 1
    last = reports(config.parent, "sync")[-1]
    assert last["nodes"]["node5"]["status"] == "diverged"
    assert "newer than the controller's primary" in last["nodes"]["node5"]["error"]
    assert files_of(victim.directory) == before
    assert run(config, "rotate") == 1  # a diverged node blocks promotion too
    assert reports(config.parent, "rotate")[-1]["outcome"] == "deferred"


def _all_command_lines() -> bytes:
    found = b""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found += Path(f"/proc/{entry}/cmdline").read_bytes() + b"\n"
            except OSError:
                continue  # the process ended meanwhile
    return found


def test_no_key_material_in_logs_reports_or_process_arguments(ready: tuple[Fleet, Path]) -> None:
    _, config = ready
    local = config.parent / "keys"
    seen = set(files_of(local).values())
    outputs = b""
    command_lines = b""
    for action in ("rotate", "sync", "verify", "rotate"):
        argv = [sys.executable, "-m", "keysyncd", "--debug", "-c", str(config), action]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            command_lines += _all_command_lines()  # every process, sshd children included
            time.sleep(0.01)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()[-2000:]
        outputs += out + err
        seen |= set(files_of(local).values())
    written = b"".join(p.read_bytes() for p in config.parent.rglob("*.json"))
    assert len(seen) >= 4 and command_lines
    for key in seen:
        assert key.strip() not in outputs
        assert key.strip() not in command_lines
        assert key.strip() not in written


def test_progress_is_shown_on_a_terminal(ready: tuple[Fleet, Path]) -> None:
    _, config = ready
    primary, replica = pty.openpty()
    try:
        argv = [sys.executable, "-m", "keysyncd", "-c", str(config), "rotate"]
        finished = subprocess.run(argv, stdout=subprocess.PIPE, stderr=replica, timeout=60)
        os.set_blocking(primary, False)
        shown = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(primary, 65536):
                shown += chunk
    finally:
        os.close(primary)
        os.close(replica)
    assert finished.returncode == 0
    text = shown.decode(errors="replace")
    for phase in ("connect", "inspect", "phase 1", "phase 2", "verify"):
        assert f"{phase}: 5/5" in text, text
    assert b"phase 1" not in finished.stdout  # progress never pollutes stdout
