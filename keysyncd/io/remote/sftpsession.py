"""The SFTP connection to one node, rooted at a directory: the channel (metered), failures
classified as NodeError, attributes, and the filesystem's condition. Reading and writing
build on it (``sftpread``, ``sftp``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

import paramiko
from paramiko.sftp import CMD_ATTRS, CMD_EXTENDED, CMD_EXTENDED_REPLY

from keysyncd.config import NodeConfig
from keysyncd.errors import NodeError
from keysyncd.io.remote.failures import classify
from keysyncd.io.remote.sftpmeter import MeteredChannel, record
from keysyncd.io.remote.sftpwire import Attributes, attributes_of, request

T = TypeVar("T")


class SessionBase:
    """An open SFTP session to one node, rooted at ``directory``: what reads and writes share."""

    def __init__(
        self, node: NodeConfig, transport: paramiko.Transport, directory: Path, timeout: float
    ) -> None:
        self.node = node
        self.directory = directory
        self._transport = transport
        # what SFTPClient.from_transport does, with the channel metered (round trips)
        channel = transport.open_session()
        channel.invoke_subsystem("sftp")
        self._channel = MeteredChannel(channel)
        self.sftp = paramiko.SFTPClient(cast(paramiko.Channel, self._channel))  # its stand-in
        channel.settimeout(timeout)

    def _path(self, name: str) -> str:
        return str(self.directory / name)

    def _guard(self, doing: str, call: Callable[..., T], *args: object) -> T:
        """Return ``call(*args)``; raise NodeError (with the reason classified) if it fails."""
        try:
            return call(*args)
        except Exception as error:
            raise self._failure(doing, error) from None

    def _failure(self, doing: str, error: Exception) -> NodeError:
        """Return the NodeError for ``error`` raised while ``doing`` something here."""
        raised = classify(self.node.name, error, doing)
        if raised.reason == "error" and isinstance(error, OSError):
            # SFTP v3 reports ENOSPC and EROFS as a bare "Failure"; ask the filesystem (not
            # after a reply no honest server sends: the answer could not be trusted either).
            condition = self.filesystem_condition()
            if condition == "read-only":
                detail = f"read-only file system while {doing}"
                return NodeError(self.node.name, "permission", detail)
            if condition == "full":
                return NodeError(self.node.name, "disk_full", f"no space left while {doing}")
        return raised

    def _stat(self, kind: int, target: object) -> Attributes:
        """Return the attributes of a path (CMD_LSTAT, CMD_STAT) or an open handle (CMD_FSTAT)."""
        reply, message = request(self.sftp, kind, target)
        if reply != CMD_ATTRS:
            raise paramiko.SFTPError("expected attributes")
        return attributes_of(message)

    def abort(self) -> None:
        """Close the connection at once (a step ran past its deadline): every call blocked
        on this node then fails, and its thread is free again."""
        with contextlib.suppress(Exception):
            self._transport.close()

    def filesystem_condition(self) -> str | None:
        """Return ``read-only``, ``full`` or None for the node's filesystem.

        Uses the statvfs@openssh.com extension; None when the server does not offer it.
        """
        try:
            kind, message = request(
                self.sftp, CMD_EXTENDED, "statvfs@openssh.com", str(self.directory)
            )
            if kind != CMD_EXTENDED_REPLY:
                return None
            # bsize frsize blocks bfree bavail files ffree favail fsid flag namemax
            values = [message.get_int64() for _ in range(11)]
        except Exception:
            return None
        if values[9] & 0x1:  # SSH2_FXE_STATVFS_ST_RDONLY
            return "read-only"
        return "full" if values[4] == 0 or values[7] == 0 else None

    def close(self) -> None:
        """Close the SFTP channel and the connection (its round trips go to the meters)."""
        record(self.node.name, round_trips=self._channel.taken())
        try:
            self.sftp.close()
        finally:
            self._transport.close()

    def remove_quietly(self, name: str) -> None:
        """Delete ``name`` if possible; used to clean up after a failure."""
        # best effort: the failure that made this necessary is already being reported
        with contextlib.suppress(Exception):
            self.sftp.remove(self._path(name))
