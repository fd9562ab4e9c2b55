"""This process: its children (hook commands and theirs, found through /proc, ended on exit;
each hook's process group is remembered while it runs, and a process that left it with
``setsid`` still carries the hook's tag, ``HOOK_TAG``, in its environment), where the running
daemon describes itself (``daemon.json``, for ``status`` without IPC), and systemd's notify
protocol (datagrams to $NOTIFY_SOCKET)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keysyncd.errors import KeysyncError
from keysyncd.io.local.fsutil import load_json
from keysyncd.io.local.trust import read_trusted

if TYPE_CHECKING:
    import socket

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
    import signal  # here, as socket below: status reads daemon.json from this module

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
    import signal

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


def daemon_file(state_dir: Path) -> Path:
    """Return where the running daemon describes itself (PID, schedule, last job)."""
    return state_dir / "daemon.json"


def read_daemon_info(state_dir: Path) -> dict[str, Any] | None:
    """Return the running daemon's self-description, or None if no daemon is running."""
    try:
        info = load_json(read_trusted(daemon_file(state_dir), limit=1 << 20) or b"null")
        os.kill(int(info["pid"]), 0)
    except (KeysyncError, OSError, ValueError, KeyError, TypeError):
        return None
    return info if isinstance(info, dict) else None


class Notifier:
    """Sends ``READY=1``, ``STATUS=...``, ``WATCHDOG=1`` and friends when run under systemd. Does
    nothing when ``NOTIFY_SOCKET`` is unset, so the daemon runs the same by hand."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self.address = None
        if address:
            # a leading "@" names a socket in the abstract namespace
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None

    def send(self, *fields: str) -> None:
        """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=idle"``) as one datagram; never raises."""
        if self.address is None:
            return
        message = "\n".join(field.replace("\n", " ") for field in fields).encode()
        try:
            if self._socket is None:
                import socket

                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto(message, self.address)
        except OSError:
            pass  # systemd going away must not take the daemon down with it

    def watchdog_interval(self) -> float | None:
        """Return how often to send WATCHDOG=1 (half of $WATCHDOG_USEC), or None if not asked."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2_000_000
        except ValueError:
            return None

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
