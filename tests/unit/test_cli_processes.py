"""The command line where a real signal or a second process is the point: verify waiting for
a running action (a busy lock held by another process) and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from keysyncd.commands.exits import Exit
from keysyncd.io.local.lock import exclusive
from tests import streams


def interactive_signals() -> None:
    """In the child, before exec: SIGINT as a terminal's foreground job has it (default).

    A suite started in the background by a shell (``nohup ... &``, some CI runners) inherits
    SIGINT ignored, and so would keysyncd; Python then installs no KeyboardInterrupt
    handler, and the Ctrl-C test would test the runner, not keysyncd.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def keysyncd(config: Path, *argv: str) -> subprocess.Popen[str]:
    # PYTHONFAULTHANDLER: a SIGABRT makes it print every thread's stack (see stacks_of)
    return subprocess.Popen(
        [sys.executable, "-m", "keysyncd", "-c", str(config), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        preexec_fn=interactive_signals,  # the test runs no threads of its own here
    )


def stacks_of(process: subprocess.Popen[str]) -> str:
    """Return the stderr of a hung ``process`` after SIGABRT: its threads' stacks."""
    process.send_signal(signal.SIGABRT)
    _, err = process.communicate(timeout=30)
    return err


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float = 30.0) -> str:
    """Return the first stderr line of ``process`` containing ``text`` (kill it and fail
    after ``timeout`` seconds)."""
    try:
        seen = streams.read_until(process.stderr, text, timeout, str(process.args))
    except AssertionError:
        process.kill()
        raise
    return next(line for line in seen.splitlines(keepends=True) if text in line)


def test_verify_waits_for_a_running_action_saying_so_and_writes_its_report(
    initialised: Path,
) -> None:
    reports = initialised.parent / "state" / "reports"
    with exclusive(initialised.parent / "state", "rotate"):
        verify = keysyncd(initialised, "verify")
        try:
            line = wait_for_line(verify, "waiting up to")
        except BaseException:
            verify.kill()
            raise
        assert re.fullmatch(r"keysyncd: waiting up to 300s for PID \d+ \(rotate\) .*\n", line)
        assert not list(reports.glob("*-verify-*.json")), "it waits before it acts"
    out, err = verify.communicate(timeout=60)
    assert verify.returncode == 0, err
    assert "fernet-tokens: verify ok (report " in out
    assert len(list(reports.glob("*-verify-*.json"))) == 1


def test_ctrl_c_exits_130(initialised: Path) -> None:
    with exclusive(initialised.parent / "state", "rotate"):
        verify = keysyncd(initialised, "verify", "--json")
        try:
            wait_for_line(verify, "waiting up to")
            verify.send_signal(signal.SIGINT)
            try:
                out, err = verify.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running 60 s after SIGINT; its stacks:\n{stacks_of(verify)}")
        finally:
            verify.kill()
    assert verify.returncode == Exit.INTERRUPTED
    assert err.splitlines()[-1] == "keysyncd: error: interrupted"
    assert json.loads(out)["exit_code"] == 130
