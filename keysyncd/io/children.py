"""This process's children (hook commands and theirs): found through /proc, ended on exit."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Return the PIDs of every live process below ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        below = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == below]
        found += kids
        frontier += kids
    return found


def terminate_children(grace: float) -> None:
    """SIGTERM every process we started (hooks and theirs), then, ``grace`` seconds later,
    SIGKILL what remains."""
    for number in (signal.SIGTERM, signal.SIGKILL):
        pids = descendants(os.getpid())
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = descendants(os.getpid())
        if not pids:
            return
