"""This process's children (hook commands and theirs): found through /proc, ended on exit.
Each hook's process group is remembered while it runs, and a process that left it
(``setsid``) still carries the hook's tag (``HOOK_TAG``) in its environment, so a hard exit
ends them all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

# The shipped unit (systemd/keysyncd.service) and the Ansible role give keysyncd this long
# after SIGTERM before systemd's SIGKILL; tests keep it above what the daemon needs.
UNIT_TIMEOUT_STOP_SEC = 45.0

HOOK_TAG = "KEYSYNCD_HOOK_RUN"  # in each hook's environment: NAME=<one token per run>

_groups: dict[int, str | None] = {}  # running hooks' process groups and their tags
_groups_lock = threading.Lock()


def remember_group(pgid: int, tag: str | None = None) -> None:
    """Record a running hook's process group and tag (ended by ``terminate_children`` too)."""
    with _groups_lock:
        _groups[pgid] = tag


def forget_group(pgid: int) -> None:
    """Forget a hook's process group once it was ended."""
    with _groups_lock:
        _groups.pop(pgid, None)


def group_members(pgid: int, tag: str | None = None) -> list[int]:
    """Return the PIDs of the live (not zombie) processes of process group ``pgid``, and of
    those whose environment carries ``tag`` (``HOOK_TAG=token``: they left the group)."""
    marker = f"{HOOK_TAG}={tag}".encode() if tag else None
    members = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            if fields[0] == "Z":
                continue
            if int(fields[2]) == pgid or (marker and _tagged(int(entry), marker)):
                members.append(int(entry))
    return members


def _tagged(pid: int, marker: bytes) -> bool:
    """Return True if process ``pid``'s environment holds ``marker`` (NAME=token)."""
    return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def end_group(pgid: int, grace: float, tag: str | None = None) -> None:
    """End process group ``pgid`` and the processes tagged ``tag`` that left it: SIGTERM, then
    SIGKILL ``grace`` seconds later; return once none is alive (or a grace after SIGKILL)."""
    for number in (signal.SIGTERM, signal.SIGKILL):
        members = group_members(pgid, tag)
        if not members:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, number)
        for pid in members:  # those that left the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, number)
        deadline = time.monotonic() + grace
        while group_members(pgid, tag) and time.monotonic() < deadline:
            time.sleep(0.02)


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
    """SIGTERM every process we started (hooks and theirs); SIGKILL the rest ``grace`` s later."""
    for number in (signal.SIGTERM, signal.SIGKILL):
        with _groups_lock:
            groups = list(_groups.items())
        for pgid, _ in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, number)
        pids = descendants(os.getpid()) + [p for g in groups for p in group_members(*g)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = descendants(os.getpid()) + [p for g in groups for p in group_members(*g)]
        if not pids:
            return
