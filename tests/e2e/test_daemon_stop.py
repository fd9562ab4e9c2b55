"""Stopping the daemon end to end.

SIGTERM mid-push or while waiting for the lock, and the hard exit after the stop timeout.

How the daemon is started, watched and stopped: ``tests/e2e/daemon_harness.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from keysyncd.testing.faults import Freezer
from keysyncd.testing.fleet import Fleet
from tests.e2e.daemon_files import (
    assert_nodes_match,
    assert_valid,
    init,
    key_files,
    lock_holder,
    reports,
    started_daemon,
    state_dir,
    write_config,
)
from tests.e2e.daemon_harness import (
    COMMAND_TIMEOUT,
    STOP_BOUND,
    DaemonProcess,
    children_of,
    clean_env,
    descendants,
    keysyncd,
    opened_for_writing,
    processes,
    session_members,
    stat_fields,
    wait_until,
)
from tests.e2e.waiting import HeldHook

pytestmark = pytest.mark.fleet


# --- 5. graceful stop during a slow push -----------------------------------------------------

# How long node3 may hang before the daemon gives up on it. SIGTERM must land inside this
# window (the test reacts in milliseconds once the hang is observed; seconds spare under
# load); the stop takes about as long, since the step in flight ends at this timeout.
HANG = 6


def test_sigterm_during_a_slow_push_exits_0_and_leaves_nodes_valid(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """SIGTERM while node3's disk stalls every write mid-rotation: exit 0 within the bound,
    every node valid for keystone, no process of the daemon left, nothing left for us to reap.

    node3's key directory is on its own filesystem. The before_rotate hook holds the
    rotation while that filesystem is frozen (fsfreeze: reads answer, writes wait in the
    kernel), so the gate decided again after the hook still verifies node3; the rotation
    promotes locally and its phase 1 hangs on node3's first write until the operation
    timeout; SIGTERM arrives during that hang.
    """
    with fleet.make_freezable("node3") as disk:
        elapsed, code, seen_children, ours_before, daemon, keys = _stop_during_a_stalled_write(
            fleet, tmp_path, daemons, disk
        )
    assert code == 0, daemon.stderr()
    assert elapsed < STOP_BOUND  # the hard-exit bound; it ends when node3's step times out
    assert seen_children, "never saw the hook process"
    for pid, started in seen_children.items():
        fields = stat_fields(pid)
        assert not fields or fields[19] != started, f"child {pid} of the daemon outlived it"
    assert session_members(daemon.pid) == set(), "processes of the daemon's session remain"
    ours_after = children_of(os.getpid())
    assert set(ours_after) <= ours_before, f"new children of the test: {ours_after}"
    assert "Z" not in ours_after.values(), f"zombies: {ours_after}"

    assert_valid("controller", keys)
    for node in fleet.nodes:
        assert_valid(node.name, node.directory)
    rotation = reports(daemon.config, "rotate", "signal")
    assert len(rotation) == 1, "the abandoned rotation was not reported"
    nodes = rotation[0]["nodes"]
    assert nodes["node3"]["status"] == "failed", nodes
    assert "abandoned: stopping" in (nodes["node1"].get("error") or ""), nodes  # SIGTERM in time
    result = keysyncd(daemon.config, "sync")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_nodes_match(fleet, daemon.config)
    print(f"timing: exit {elapsed:.2f} s after SIGTERM during the hang ({HANG} s)")


def _stop_during_a_stalled_write(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess], disk: Freezer
) -> tuple[float, int | None, dict[int, str], set[int], DaemonProcess, Path]:
    """Run the rotation into node3's stalled disk and stop the daemon there; return the
    seconds the stop took, its exit code, the hook processes seen, the test's children
    before, the daemon and the controller's key directory."""
    hook = HeldHook.at(tmp_path / "hook")
    config = write_config(
        fleet,
        tmp_path / "ctl",
        ssh={"operation_timeout": HANG},
        hooks={"before_rotate": [hook.command]},
    )
    init(config)
    keys = config.parent / "keys"
    new_primary = str(max(key_files(keys)) + 1)
    node1 = fleet.node("node1").directory
    staged = (node1 / "0").read_bytes()
    ours_before = set(children_of(os.getpid()))
    daemon = daemons(config)
    daemon.wait_ready()
    seen_children: dict[int, str] = {}

    def hook_running() -> bool:
        kids = children_of(daemon.pid)
        seen_children.update({pid: stat_fields(pid)[19] for pid in kids if stat_fields(pid)})
        return bool(kids)

    node3 = fleet.node("node3")
    assert node3.pid is not None
    try:
        daemon.send(signal.SIGUSR1)
        hook.wait_started("the before_rotate hook", gone=daemon.gone, context=daemon.context)
        assert hook_running(), "the hook is not the daemon's child"
        disk.freeze()
        hook.let_go()
        wait_until(lambda: not hook_running(), "the hook to finish", daemon)
        # The push now waits on node3: the new primary is in place locally and node3's SFTP
        # server sleeps in the kernel (state D) on a write to its frozen filesystem.
        wait_until(
            lambda: (keys / new_primary).exists() and _writing_stalled(node3.pid),
            "the push to hang on node3",
            daemon,
        )
        holder = lock_holder(config)
        assert holder is not None and holder["pid"] == daemon.pid, "not rotating any more"
        # phase 1 gave node1 the new primary; phase 2 (a new staged key) waits for node3
        assert (node1 / "0").read_bytes() == staged, "phase 2 went past node3's phase 1"
        stopped_at = time.monotonic()
        code = daemon.stop(STOP_BOUND)
        elapsed = time.monotonic() - stopped_at
    finally:
        hook.let_go()
        disk.thaw()
    return elapsed, code, seen_children, ours_before, daemon, keys


def _writing_stalled(sshd: int) -> bool:
    """Return True if a process below node3's sshd sleeps uninterruptibly (a frozen write)."""
    return any(stat_fields(pid)[:1] == ["D"] for pid in descendants(sshd))


def test_sigterm_while_waiting_for_the_lock_exits_at_once(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """A daemon job waiting for the lock held by a CLI rotate gives up on SIGTERM at once.

    Regression: it used to keep waiting (up to LOCK_WAIT) and was hard-exited after 30 s.
    The CLI holds the lock in its before_rotate hook until the test releases it, which it
    does only after the daemon exited: the daemon cannot have had the lock meanwhile.
    """
    hook = HeldHook.at(tmp_path / "hook")
    cli_config = write_config(fleet, tmp_path / "ctl", hooks={"before_rotate": [hook.command]})
    cli_config = Path(shutil.copy(cli_config, tmp_path / "ctl" / "cli.yaml"))
    config, daemon = started_daemon(fleet, tmp_path / "ctl", daemons)
    with subprocess.Popen(
        [sys.executable, "-m", "keysyncd", "-c", str(cli_config), "rotate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
    ) as cli:

        def cli_gone() -> str | None:
            return None if cli.poll() is None else f"the CLI exited ({cli.returncode})"

        try:
            hook.wait_started("the CLI's before_rotate hook", gone=cli_gone)
            holder = lock_holder(config)
            assert holder is not None and holder["pid"] == cli.pid, holder
            daemon.send(signal.SIGUSR1)
            lock = state_dir(config) / "lock"
            wait_until(
                lambda: opened_for_writing(daemon.pid, lock),
                "the daemon's rotation to wait for the lock",
                daemon,
            )
            stopped_at = time.monotonic()
            code = daemon.stop()
            elapsed = time.monotonic() - stopped_at
            holder = lock_holder(config)
            assert holder is not None and holder["pid"] == cli.pid, "the CLI lost the lock"
            hook.let_go()
            output, _ = cli.communicate(timeout=COMMAND_TIMEOUT)
        finally:
            hook.let_go()
            if cli.poll() is None:
                cli.kill()
    assert code == 0, daemon.stderr()
    print(f"timing: stopped {elapsed:.3f} s after SIGTERM while waiting for the lock")
    assert "not waiting for it: stopping" in daemon.stderr(), daemon.stderr()
    assert "did not finish within" not in daemon.stderr(), "hard exit: it waited for the lock"
    # The waiting job polls its stop flag every 0.1 s; 10 s is far above any delay under load
    # and far below the 30 s hard exit that waiting for the lock would end in.
    assert elapsed < 10.0, f"the stop took {elapsed:.1f}s: it waited for the CLI's lock"
    assert cli.returncode == 0, output
    assert [r["trigger"] for r in reports(config, "rotate")] == ["cli"]
    assert_nodes_match(fleet, config)


def test_hard_exit_after_the_stop_timeout_leaves_no_hook_behind(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """A hook that outlasts STOP_TIMEOUT (shortened to 2 s here): the daemon exits 0 anyway
    and terminates the hook first; every node stays valid.

    The hook ignores SIGTERM, so the stop's SIGTERM to its process group does not end it and
    its SIGKILL comes GROUP_GRACE (3 s) later, after the hard exit: the hard exit ends it.
    Regression: the hard exit left the hook process running, orphaned.
    """
    stop_timeout = 2.0
    # the hook only has to outlast the stop timeout by far: it is never meant to end
    hook = ["sh", "-c", "trap '' TERM; sleep 600"]
    config = write_config(fleet, tmp_path / "ctl", hooks={"before_rotate": [hook]})
    init(config)
    daemon = daemons(config, stop_timeout=stop_timeout)
    daemon.wait_ready()
    daemon.send(signal.SIGUSR1)
    hooks = wait_until(lambda: children_of(daemon.pid), "the before_rotate hook", daemon)
    started = {pid: stat_fields(pid)[19] for pid in hooks}
    stopped_at = time.monotonic()
    assert daemon.stop(STOP_BOUND) == 0, daemon.stderr()
    elapsed = time.monotonic() - stopped_at
    # The property is about time: the step gets stop_timeout, then the hook gets SIGTERM
    # (CHILD_GRACE 2 s before SIGKILL; it ignores SIGTERM) and the daemon exits: about 4.5 s.
    # The lower bound cannot be broken by load; 10 s leaves 7 s for scheduling delays.
    print(f"timing: hard exit {elapsed:.3f} s after SIGTERM (stop timeout {stop_timeout:g} s)")
    assert stop_timeout <= elapsed < 10.0, f"the stop took {elapsed:.1f}s"
    assert "did not finish within" in daemon.stderr(), daemon.stderr()
    for pid, start in started.items():
        fields = stat_fields(pid)
        assert not fields or fields[19] != start, f"hook {pid} outlived the daemon"
    assert session_members(daemon.pid) == set(), "processes of the daemon's session remain"
    for pid in started:  # each hook leads a process group of its own (zombies are dead)
        left = {p for p, f in processes().items() if int(f[2]) == pid and f[0] != "Z"}
        assert left == set(), f"processes of hook {pid}'s group remain"
    assert_valid("controller", config.parent / "keys")
    for node in fleet.nodes:
        assert_valid(node.name, node.directory)
