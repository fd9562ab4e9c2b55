"""An after_rotate that did not finish blocks the next rotation, whatever ended it (SPEC
rule 9): keysyncd killed with SIGKILL while the hook runs, or the daemon stopped (SIGTERM)
during a long hook, which it ends within its stop budget.

The real ``keysyncd`` command and daemon run as processes against a real fleet. A hook
writes its PID (= its process group: each hook leads one) before it waits; every group a
test started is SIGKILLed by that PID at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from keysyncd.io.runtime.hooks import GROUP_GRACE
from keysyncd.testing.fleet import Fleet
from tests.e2e.daemon_files import assert_nodes_match, init, key_files, write_config
from tests.e2e.daemon_harness import DaemonProcess, clean_env, keysyncd, processes, wait_until

pytestmark = pytest.mark.fleet


def group_members(pgid: int) -> set[int]:
    """Return the live (not zombie) processes of process group ``pgid``."""
    return {pid for pid, f in processes().items() if int(f[2]) == pgid and f[0] != "Z"}


@pytest.fixture
def groups() -> Iterator[list[int]]:
    """Return a list to add hook process groups to; each is SIGKILLed at teardown."""
    started: list[int] = []
    yield started
    for pgid in started:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def pid_written(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text.isdigit() else None


def waiting_hook(marker: Path, ignore_term: bool = False) -> list[str]:
    """Return a hook that writes its PID to ``marker``, then sleeps (never meant to end)."""
    trap = "trap '' TERM; " if ignore_term else ""
    return ["sh", "-c", f"{trap}echo $$ > {shlex.quote(str(marker))}; sleep 600"]


def set_after_rotate(config: Path, hook: list[str], timeout: float = 600) -> None:
    document = yaml.safe_load(config.read_text())
    document["repositories"][0]["hooks"] = {"after_rotate": [hook], "timeout": timeout}
    config.write_text(yaml.safe_dump(document))


def journal(config: Path) -> dict:
    return json.loads((config.parent / "state" / "repositories" / "fernet-tokens.json").read_text())


def everything(fleet: Fleet, config: Path) -> dict[str, dict[int, bytes]]:
    found = {node.name: key_files(node.directory) for node in fleet.nodes}
    found["controller"] = key_files(config.parent / "keys")
    return found


def test_keysyncd_killed_while_after_rotate_runs_leaves_the_rotation_blocked(
    fleet: Fleet, tmp_path: Path, groups: list[int]
) -> None:
    """kill -9 of ``keysyncd rotate`` inside its after_rotate hook: the block was journaled
    before the hook started, so the next rotation is blocked (the hook still fails) until the
    hook succeeds."""
    marker = tmp_path / "hook-pid"
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    set_after_rotate(config, waiting_hook(marker))
    command = [sys.executable, "-m", "keysyncd", "-c", str(config), "rotate"]
    rotating = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env()
    )
    try:
        hook = wait_until(lambda: pid_written(marker), "the after_rotate hook to start")
        groups.append(hook)
        os.kill(rotating.pid, signal.SIGKILL)
    finally:
        if rotating.poll() is None:
            rotating.kill()
        rotating.wait(30)
    block = journal(config)["hook_block"]
    assert block is not None, "the after_rotate hook ran without a block in the journal"
    assert block["status"] is None and block["problem"] == ""  # started, never finished
    status = keysyncd(config, "status")
    assert status.returncode == 1
    assert "did not finish" in status.stdout and "None" not in status.stdout, status.stdout

    os.killpg(hook, signal.SIGKILL)  # the orphaned hook: the migration never finished
    wait_until(lambda: not group_members(hook), "the orphaned hook to end")
    set_after_rotate(config, ["sh", "-c", "exit 1"], timeout=30)
    before = everything(fleet, config)
    blocked = keysyncd(config, "rotate")
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert "blocked" in blocked.stdout and "exited with status 1" in blocked.stdout
    assert everything(fleet, config) == before, "a blocked rotation changed keys"
    assert journal(config)["hook_block"]["status"] == 1

    set_after_rotate(config, ["true"], timeout=30)
    done = keysyncd(config, "rotate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert journal(config)["hook_block"] is None
    assert everything(fleet, config)["controller"] != before["controller"]
    assert_nodes_match(fleet, config)


def test_sigterm_during_a_long_after_rotate_ends_its_group_within_the_stop_budget(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess], groups: list[int]
) -> None:
    """The daemon ends a running hook's whole group at once (SIGTERM, then SIGKILL after
    GROUP_GRACE: this hook ignores SIGTERM), exits 0 long before its 30 s step timeout, and
    the rotation stays blocked in the journal."""
    marker = tmp_path / "hook-pid"
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    set_after_rotate(config, waiting_hook(marker, ignore_term=True))
    daemon = daemons(config)
    daemon.wait_ready()
    daemon.send(signal.SIGUSR1)
    hook = wait_until(lambda: pid_written(marker), "the after_rotate hook", daemon)
    groups.append(hook)
    wait_until(lambda: len(group_members(hook)) == 2, "the hook's sleep", daemon)
    stopped_at = time.monotonic()
    assert daemon.stop() == 0, daemon.stderr()
    elapsed = time.monotonic() - stopped_at
    # About time: the hook's group gets GROUP_GRACE (3 s) before SIGKILL, then the rotation
    # commits; 5 s more is for a loaded machine, far below the 30 s a step may take.
    print(f"timing: stopped {elapsed:.2f} s after SIGTERM during after_rotate")
    assert elapsed < GROUP_GRACE + 5.0, daemon.stderr()
    assert group_members(hook) == set(), "the hook's process group outlived the daemon"
    block = journal(config)["hook_block"]
    assert block is not None and block["status"] is None, block
    assert "keysyncd is stopping" in block["problem"], block
