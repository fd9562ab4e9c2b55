"""The controller's own files are input too: unsafe or damaged ones are refused, never used.

Each case plants something in a loose or damaged ``state_dir``/``report_dir`` or breaks the
SSH files, runs a real command through ``main``, and asserts: exit 2, exactly one line on
stderr naming the path, no traceback, and nothing changed anywhere (a symlink's target
outside ``state_dir`` included). Nodes are never contacted: every refusal comes first.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from keysyncd.commands.cli import main
from tests.filetree import tree

ROOT = os.geteuid() == 0


@dataclass
class Controller:
    root: Path
    config: Path

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def victim(self) -> Path:
        return self.root / "outside" / "victim"


def make_controller(tmp_path: Path) -> Controller:
    """An initialised controller without nodes, plus SSH files and a victim file outside."""
    (tmp_path / "outside").mkdir()
    victim = tmp_path / "outside" / "victim"
    victim.write_text("precious: must never be truncated, chmod-ed or read\n")
    victim.chmod(0o640)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")],
                   check=True)  # fmt: skip
    (tmp_path / "known_hosts").write_text(
        "[127.0.0.1]:9 " + " ".join((tmp_path / "id.pub").read_text().split()[:2]) + "\n"
    )
    document = {
        "state_dir": str(tmp_path / "state"),
        "report_dir": str(tmp_path / "reports"),
        "repositories": [{"name": "fernet-tokens", "path": str(tmp_path / "keys")}],
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(document))
    assert main(["-c", str(config), "init"]) == 0
    return Controller(tmp_path, config)


def with_node(controller: Controller) -> None:
    """Add a node (never reached: the SSH files are refused first) and the SSH section."""
    document = yaml.safe_load(controller.config.read_text())
    document["ssh"] = {
        "user": "root",
        "identity_file": str(controller.root / "id"),
        "known_hosts": str(controller.root / "known_hosts"),
        "connect_timeout": 2,
    }
    document["nodes"] = [{"name": "node1", "host": "127.0.0.1", "port": 9}]  # fmt: skip
    controller.config.write_text(yaml.safe_dump(document))


def symlink_to_victim(relative: str) -> Callable[[Controller], Path]:
    def plant(c: Controller) -> Path:
        path = c.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.symlink_to(c.victim)
        return path

    return plant


def chmod(relative: str, mode: int) -> Callable[[Controller], Path]:
    def plant(c: Controller) -> Path:
        (c.root / relative).chmod(mode)
        return c.root / relative

    return plant


def chown(relative: str) -> Callable[[Controller], Path]:
    def plant(c: Controller) -> Path:
        os.chown(c.root / relative, 65534, 65534)
        return c.root / relative

    return plant


def fifo(relative: str) -> Callable[[Controller], Path]:
    def plant(c: Controller) -> Path:
        path = c.root / relative
        path.unlink(missing_ok=True)
        os.mkfifo(path, 0o600)
        return path

    return plant


def state_content(text: str) -> Callable[[Controller], Path]:
    def plant(c: Controller) -> Path:
        path = c.state / "repositories" / "fernet-tokens.json"
        path.write_text(text)
        return path

    return plant


def state_field(**fields: object) -> Callable[[Controller], Path]:
    def plant(c: Controller) -> Path:
        path = c.state / "repositories" / "fernet-tokens.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
        return path

    return plant


def ssh_file(relative: str, content: str | None = None, mode: int | None = None) -> Callable:
    def plant(c: Controller) -> Path:
        with_node(c)
        path = c.root / relative
        if content is None and mode is None:
            path.unlink()
        if content is not None:
            path.write_text(content)
        if mode is not None:
            path.chmod(mode)
        return path

    return plant


def nested(relative: str, depth: int = 100_000) -> Callable[[Controller], Path]:
    """JSON nested so deep that a naive parser exhausts the stack."""

    def plant(c: Controller) -> Path:
        path = c.root / relative
        path.write_text("[" * depth + "]" * depth)
        return path

    return plant


def hard_link_to_victim(relative: str) -> Callable[[Controller], Path]:
    def plant(c: Controller) -> Path:
        path = c.root / relative
        path.unlink(missing_ok=True)
        os.link(c.victim, path)
        return path

    return plant


CASES: dict[str, Callable[[Controller], Path]] = {
    "nested-state-file": nested("state/repositories/fernet-tokens.json"),
    "state-time-out-of-range": state_field(last_rotation_at=1e300),
    "state-negative-time": state_field(history={"1": {"created_at": -5.0}}),
    "hard-linked-lock": hard_link_to_victim("state/lock"),
    "symlinked-lock": symlink_to_victim("state/lock"),
    "symlinked-state-file": symlink_to_victim("state/repositories/fernet-tokens.json"),
    "symlinked-report-head": symlink_to_victim("state/reports-head.json"),
    "symlinked-chain-lock": symlink_to_victim("reports/.lock"),
    "fifo-lock": fifo("state/lock"),
    "fifo-state-file": fifo("state/repositories/fernet-tokens.json"),
    "loose-state-dir": chmod("state", 0o777),
    "group-writable-state-dir": chmod("state", 0o770),
    "loose-report-dir": chmod("reports", 0o757),
    "loose-state-file": chmod("state/repositories/fernet-tokens.json", 0o666),
    "loose-lock": chmod("state/lock", 0o622),
    "state-not-json": state_content("{not json"),
    "state-truncated": state_content('{"version": 1, "name": "fernet-tokens", "genera'),
    "state-not-an-object": state_content("[1, 2, 3]"),
    "state-generation-text": state_field(generation="seven"),
    "state-digests-list": state_field(digests=["a", "b"]),
    "state-history-junk": state_field(history={"1": {"created_at": "yesterday"}}),
    "state-node-not-object": state_field(nodes={"node1": 5}),
    "state-counter-text": state_field(counters={"deferred": "many"}),
    "state-pending-junk": state_field(pending={"new_primary": "x", "retire": "all"}),
    "state-hook-block-junk": state_field(hook_block={"hook": "rm -rf /", "status": 1}),
    "state-wrong-version": state_field(version=99),
    "state-nan": state_field(last_rotation_at=float("nan")),
    "identity-0644": ssh_file("id", mode=0o644),
    "identity-not-a-key": ssh_file("id", content="this is not a private key\n", mode=0o600),
    "identity-missing": ssh_file("id"),
    "known-hosts-missing": ssh_file("known_hosts"),
    "known-hosts-bad-line": ssh_file("known_hosts", content="[127.0.0.1]:9 ssh-ed25519\n"),
    "known-hosts-bad-base64": ssh_file("known_hosts", content="h ssh-ed25519 !!!!\n"),
    "known-hosts-world-writable": ssh_file("known_hosts", mode=0o666),
}


def foreign_parent(relative: str) -> Callable[[Controller], Path]:
    """Someone else owns the directory above: they could swap ours for a link of theirs."""

    def plant(c: Controller) -> Path:
        os.chown(c.root / relative, 65534, 65534)
        return c.root / relative

    return plant


def foreign_identity(c: Controller) -> Path:
    with_node(c)
    os.chown(c.root / "id", 65534, 65534)
    return c.root / "id"


if ROOT:
    CASES |= {
        "state-dir-foreign-owner": chown("state"),
        "state-file-foreign-owner": chown("state/repositories/fernet-tokens.json"),
        "identity-foreign-owner": foreign_identity,
        "state-dir-parent-foreign-owner": foreign_parent("."),
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_unsafe_or_damaged_local_file_is_refused(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    controller = make_controller(tmp_path)
    path = CASES[name](controller)
    before = tree(tmp_path)
    victim = controller.victim.read_bytes()
    capsys.readouterr()
    started = time.monotonic()
    code = main(["-c", str(controller.config), "rotate"])
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    assert time.monotonic() - started < 5, "a FIFO or a stalled read must never block"
    assert tree(tmp_path) == before, "nothing changed anywhere"
    assert controller.victim.read_bytes() == victim
    assert stat.S_IMODE(controller.victim.stat().st_mode) == 0o640


def test_damaged_report_head_never_blocks_and_verify_chain_reports_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    controller = make_controller(tmp_path)
    head = controller.state / "reports-head.json"
    head.write_text('{"head": "not a link"')
    config = ["-c", str(controller.config)]
    assert main([*config, "rotate"]) == 0
    assert main([*config, "sync"]) == 0
    assert main([*config, "verify"]) == 0
    capsys.readouterr()
    assert main([*config, "report", "verify-chain"]) == 1
    out = capsys.readouterr().out
    assert "chain head was damaged" in out and str(head) in out
    assert main([*config, "rotate"]) == 0  # still not blocked once the head is whole again


def test_damaged_report_is_named_by_report_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    controller = make_controller(tmp_path)
    (report,) = controller.reports.glob("*.json")
    report.write_text("{truncated")
    capsys.readouterr()
    assert main(["-c", str(controller.config), "report", "show", report.stem]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(report) in err[0]
    assert main(["-c", str(controller.config), "rotate"]) == 0  # the action goes on


@pytest.mark.skipif(not ROOT, reason="mounting a tiny tmpfs needs root")
def test_full_state_dir_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    controller = make_controller(tmp_path)
    keys_before = tree(tmp_path / "keys")
    state = controller.state
    saved = tmp_path / "saved-state"
    state.rename(saved)
    state.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", str(state)],
                   check=True)  # fmt: skip
    try:
        subprocess.run(["cp", "-a", f"{saved}/.", str(state)], check=True)
        filler = 0
        while filler < 64:
            try:
                (state / f"fill{filler}").write_bytes(b"x" * 4096)
            except OSError:
                break
            filler += 1
        capsys.readouterr()
        assert main(["-c", str(controller.config), "rotate"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "disk full" in err[0] and str(state) in err[0], err
        assert tree(tmp_path / "keys") == keys_before, "nothing rotated without its journal"
    finally:
        subprocess.run(["umount", str(state)], check=True)


def test_check_config_reports_every_unsafe_file_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    controller = make_controller(tmp_path)
    with_node(controller)
    (tmp_path / "id").chmod(0o644)
    controller.state.chmod(0o777)
    symlink_to_victim("state/reports-head.json")(controller)
    capsys.readouterr()
    assert main(["-c", str(controller.config), "check-config"]) == 2
    err = capsys.readouterr().err
    for path in (tmp_path / "id", controller.state, controller.state / "reports-head.json"):
        assert str(path) in err, err
    assert "Traceback" not in err


def test_a_head_nested_too_deep_never_blocks_and_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    controller = make_controller(tmp_path)
    nested("state/reports-head.json")(controller)
    config = ["-c", str(controller.config)]
    assert main([*config, "rotate"]) == 0
    capsys.readouterr()
    assert main([*config, "report", "verify-chain"]) == 1
    assert "reports-head.json is not valid JSON" in capsys.readouterr().out


def test_a_busy_lock_with_a_hostile_record_still_says_who_to_wait_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    controller = make_controller(tmp_path)
    lock = controller.state / "lock"
    descriptor = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.write(descriptor, b"[" * 4000 + b"]" * 4000)
        capsys.readouterr()
        assert main(["-c", str(controller.config), "rotate"]) == 1
    finally:
        os.close(descriptor)
    err = capsys.readouterr().err
    assert "another keysyncd holds the lock: an unknown process" in err, err
    assert "Traceback" not in err


def test_local_key_names_are_escaped_in_every_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    controller = make_controller(tmp_path)
    odd = tmp_path / "keys" / "\r\x0b1\n"
    odd.write_bytes(b"x")
    odd.chmod(0o644)
    capsys.readouterr()
    main(["-c", str(controller.config), "status"])
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "'\\r\\x0b1\\n'" in output and "\r" not in output and "\x0b" not in output
