"""What an action cost each node on the wire: SFTP round trips and full reads of its
repository view, counted per node for tests and the bench (counts only, never a name)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import paramiko


@dataclass
class Traffic:
    """One node's part: ``round_trips`` (requests sent, then the node awaited: a pipelined batch is
    one) and ``reads`` (full reads of its repository view)."""

    round_trips: int = 0
    reads: int = 0


_lock = threading.Lock()
_open: list[dict[str, Traffic]] = []


@contextmanager
def metered() -> Iterator[dict[str, Traffic]]:
    """Yield a dict of each node's traffic from connections and fan-outs ending in the block."""
    seen: dict[str, Traffic] = {}
    with _lock:
        _open.append(seen)
    try:
        yield seen
    finally:
        with _lock:
            _open.remove(seen)


def record(node: str, round_trips: int = 0, reads: int = 0) -> None:
    """Add to ``node``'s traffic in every open ``metered`` block (none open: nothing)."""
    with _lock:
        for seen in _open:
            traffic = seen.setdefault(node, Traffic())
            traffic.round_trips += round_trips
            traffic.reads += reads


class MeteredChannel:
    """An SFTP channel that counts round trips (a receive after a send starts one); the rest is the
    paramiko Channel's public API, given to SFTPClient as its channel."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self._channel = channel
        self._sent = False
        self.round_trips = 0

    def send(self, data: bytes) -> int:
        """Send what the channel's ``send`` sends; return how much it took."""
        self._sent = True
        return self._channel.send(data)

    def sendall(self, data: bytes) -> None:
        """Send all of ``data`` (one pipelined batch)."""
        self._sent = True
        self._channel.sendall(data)

    def recv(self, size: int) -> bytes:
        """Return what the channel's ``recv`` returns."""
        if self._sent:
            self._sent = False
            self.round_trips += 1
        return self._channel.recv(size)

    def taken(self) -> int:
        """Return the round trips counted since the last call (recorded once, at close)."""
        count, self.round_trips = self.round_trips, 0
        return count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)
