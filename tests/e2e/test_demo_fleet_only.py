"""``scripts/demo --fleet-only``: the fleet keeps running, the config path and the commands to
try are printed, keysyncd works against it, and Ctrl-C stops everything."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from keysyncd.testing.demo import COMMANDS_TO_TRY, keysyncd_argv
from keysyncd.testing.processes import alive, descendants
from tests import commandlines, streams
from tests.commandlines import environment


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
    """Every command the demo prints runs as printed (bash, a shell that has no
    KEYSYNCD_CONFIG and no venv on PATH), in the order printed, and exits 0."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "keysyncd.testing.demo", "--fleet-only", "--nodes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        shown = read_until(demo, "removes the demo directory")
        [config] = re.findall(r"^config: (\S+)$", shown, re.M)
        printed = re.findall(r"^  (/\S+ .*)$", shown, re.M)
        keysyncd = shlex.join([*keysyncd_argv(), "-c", config])
        assert printed == [f"{keysyncd} {command}" for command in COMMANDS_TO_TRY], shown
        env = environment(PATH="/usr/bin:/bin")  # no keysyncd there: the commands name it
        outputs = {}
        for line in printed[:-1]:
            done = commandlines.run(line, env, Path("/"), timeout=120)
            assert done.returncode == 0, (line, done.stdout, done.stderr)
            outputs[line.removeprefix(f"{keysyncd} ")] = done.stdout
        assert "node node2: in_sync" in outputs["status"]  # init pushed the keys, read them back
        assert commandlines.run_daemon(printed[-1], env, Path("/"), "started", 120) == 0
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=60)
    finally:
        stop_everything(demo)
    assert demo.returncode == 0, err
    assert "stopping the fleet" in out
    assert not Path(config).exists(), "the demo directory is removed"
