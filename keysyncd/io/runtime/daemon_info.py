"""The running daemon: where it describes itself (``daemon.json``, so that ``status`` can
show it without IPC), and systemd's notify protocol (datagrams to $NOTIFY_SOCKET)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from keysyncd.errors import KeysyncError
from keysyncd.io.local.fsutil import load_json
from keysyncd.io.local.trust import read_trusted


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
