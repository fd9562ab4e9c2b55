"""A hook's child that leaves its process group (setsid, as a daemonising program does) is
ended with the group all the same: it carries the hook's tag in its environment
(keysyncd.io.runtime.children.HOOK_TAG), after a timeout and after the hook's own exit alike."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from keysyncd.io.runtime.hooks import run_hooks
from keysyncd.testing.processes import alive


def test_a_setsid_child_is_ended_with_a_timed_out_hook(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # the hook records the pid itself ($!), before anything can end the child: a child
    # ended before it ran a line of its own must not fail the test for want of its pid
    script = f"setsid sh -c 'exec sleep 120' & echo $! >> {pids}; sleep 120"
    try:
        [run] = run_hooks("after_rotate", (("sh", "-c", script),), b"", 1.0)
        assert "timed out" in run.problem and "group was ended" in run.problem, run
        time.sleep(0.2)
        [escaped] = [int(line) for line in pids.read_text().split()]
        assert not alive(escaped), (
            f"pid {escaped} (setsid by the hook) still runs after the hook 'timed out ... its "
            "process group was ended'"
        )
    finally:
        for line in pids.read_text().split() if pids.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line), signal.SIGKILL)


def test_a_double_forked_daemon_is_ended_after_a_successful_hook(tmp_path: Path) -> None:
    """The hook is done at its exit: a daemonised child left behind is ended with its group, so
    a cleared block never has a migration still running behind it."""
    pids = tmp_path / "pids"
    script = f"setsid sh -c 'exec sleep 120' </dev/null >/dev/null 2>&1 & echo $! >> {pids}"
    try:
        [run] = run_hooks("after_rotate", (("sh", "-c", script),), b"", 10.0)
        assert run.ok
        time.sleep(0.3)
        [escaped] = [int(line) for line in pids.read_text().split()]
        assert not alive(escaped), f"pid {escaped} still runs after the hook was 'done'"
    finally:
        for line in pids.read_text().split() if pids.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line), signal.SIGKILL)
