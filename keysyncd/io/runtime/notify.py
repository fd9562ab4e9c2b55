"""systemd's notify protocol, without extra dependencies: datagrams to $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket


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
