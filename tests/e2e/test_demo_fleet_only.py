"""``scripts/demo --fleet-only``: the fleet keeps running, the config path and the commands to
try are printed, keysyncd works against it, and Ctrl-C stops everything."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from keysyncd.testing.processes import alive, descendants
from tests import streams


def read_until(process: subprocess.Popen[str], text: str, timeout: float = 60.0) -> str:
    """Return the demo's stdout up to and including the first line containing ``text``."""
    return streams.read_until(process.stdout, text, timeout, "the demo")


def stop_everything(demo: subprocess.Popen[str]) -> None:
    """Stop the demo and, if it had to be killed, every process it started (its sshd nodes,
    by PID: exactly what this test launched), then its directory."""
    if demo.poll() is None:
        demo.send_signal(signal.SIGINT)  # its own clean stop first
        with contextlib.suppress(subprocess.TimeoutExpired):
            demo.wait(timeout=30)
    left = [pid for pid in descendants(demo.pid) if alive(pid)] if demo.poll() is None else []
    demo.kill()
    demo.wait(timeout=30)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_fleet_only_keeps_the_fleet_for_commands_and_stops_on_ctrl_c() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "keysyncd.testing.demo", "--fleet-only", "--nodes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        shown = read_until(demo, "Ctrl-C stops it")
        [config] = re.findall(r"^config: (\S+)$", shown, re.M)
        assert f"export KEYSYNCD_CONFIG={config}" in shown
        assert f"{sys.executable} -m keysyncd check-config" in shown
        assert f"{sys.executable} -m keysyncd rotate --dry-run" in shown
        env = {**os.environ, "KEYSYNCD_CONFIG": config}
        for argv in (["check-config"], ["init"], ["status"]):
            done = subprocess.run(
                [sys.executable, "-m", "keysyncd", *argv],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, (argv, done.stdout, done.stderr)
        assert "node node2: updated" in done.stdout  # init pushed the keys and read them back
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=60)
    finally:
        stop_everything(demo)
    assert demo.returncode == 0, err
    assert "stopping the fleet" in out
    assert not Path(config).exists(), "the demo directory is removed"
