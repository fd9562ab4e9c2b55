"""Shell command lines as a reader copies them: from the README's blocks, or as the demo
prints them, run with bash exactly as written (tests/e2e/test_readme_commands.py and
tests/e2e/test_demo_fleet_only.py)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests import streams

# The fenced blocks a reader runs in a shell (```yaml, ```text and the like are not).
SHELL_LANGUAGES = ("sh", "bash", "console")
_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class Command:
    """One command of a README block: its text as written (continuation lines joined with
    their backslashes, as bash reads them), the heading it is under and its line number."""

    text: str
    section: str
    line: int


def shell_commands(markdown: str) -> list[Command]:
    """Return every command of the sh, bash and console blocks of ``markdown``, in order.

    A console block's commands are its ``$ `` lines (the rest is output); comment-only and
    blank lines are no commands. Raise ValueError for a fence that is never closed.
    """
    commands: list[Command] = []
    section, language, opened = "", None, 0
    pending: list[str] = []
    for number, line in enumerate(markdown.splitlines(), start=1):
        fence = _FENCE.match(line)
        if language is None:
            if fence:
                language, opened = fence.group(1), number
            elif line.startswith("#"):
                section = line.lstrip("#").strip()
            continue
        if fence and not fence.group(1):
            language = None
            continue
        if language not in SHELL_LANGUAGES:
            continue
        if language == "console":
            if not (line.startswith("$ ") or pending):
                continue
            line = line.removeprefix("$ ") if not pending else line
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending.append(line)
        if not line.endswith("\\"):
            first = number - len(pending) + 1
            commands.append(Command("\n".join(pending), section, first))
            pending = []
    if language is not None:
        raise ValueError(f"the block opened on line {opened} is never closed")
    return commands


def run(
    line: str, env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Return ``line`` run by ``bash -c`` in ``cwd`` with ``env``, within ``timeout`` seconds."""
    return subprocess.run(
        ["bash", "-c", line],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_daemon(
    line: str,
    env: dict[str, str],
    cwd: Path,
    ready: str,
    timeout: float,
    before: Sequence[str] = (),
) -> int:
    """Run the long-running ``line`` by bash after the lines ``before`` (``exec``: the signal
    reaches the command itself), wait for ``ready`` on its stderr, stop it with SIGTERM as
    systemd does; return its exit code. Raise AssertionError if it ends or stays silent
    first (it is killed then)."""
    daemon = subprocess.Popen(
        ["bash", "-c", "\n".join([*before, f"exec {line}"])],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        streams.read_until(daemon.stderr, ready, timeout, line)
        daemon.send_signal(signal.SIGTERM)
        return daemon.wait(timeout=timeout)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=30)
        with contextlib.suppress(OSError):
            if daemon.stderr is not None:
                daemon.stderr.close()


def environment(**extra: str) -> dict[str, str]:
    """Return this process's environment with ``extra`` set and no KEYSYNCD_CONFIG of its own."""
    env = {k: v for k, v in os.environ.items() if k != "KEYSYNCD_CONFIG"}
    return {**env, **extra}
