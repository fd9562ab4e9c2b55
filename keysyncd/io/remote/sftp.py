"""The SFTP session to one node and its writes (reads: ``sftpread``). SFTP only, so operators
can pin keysyncd's key to ``internal-sftp``. Temp files are created exclusively with mode
0600 and their owner set through the handle, then renamed into place."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import paramiko
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_EXTENDED,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_LSTAT,
    CMD_MKDIR,
    CMD_OPEN,
    CMD_REMOVE,
    CMD_STATUS,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_WRITE,
)
from paramiko.sftp_attr import SFTPAttributes

from keysyncd.errors import NodeError
from keysyncd.io.local.fsutil import clock_probe_name, temp_name
from keysyncd.io.remote.sftpbatch import fill, handle_of
from keysyncd.io.remote.sftpread import ReadingSession
from keysyncd.io.remote.sftpwire import Reply, attributes_of, expect, pipeline, request

PROBE_MODE = 0o644  # the clock probe: empty, and readable by keystone whoever created it


class NodeSession(ReadingSession):
    """An open SFTP session to one node, rooted at its repository directory."""

    def rooted(self, directory: Path) -> NodeSession:
        """Return a session on this connection rooted at ``directory`` (closing one closes both)."""
        other = copy.copy(self)
        other.directory = directory
        return other

    def _create(self, path: str, mode: int = 0o600) -> Reply:
        """Send the OPEN that creates ``path`` exclusively, ``mode`` from its first instant
        (never through an existing name, a link or a FIFO); return the reply."""
        attributes = SFTPAttributes()
        attributes.st_mode = mode
        flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL
        return request(self.sftp, CMD_OPEN, path, flags, attributes)

    def make_directory(self, mode: int, uid: int | None = None, gid: int | None = None) -> None:
        """Create the session's directory with ``mode`` (from the first instant), owned by
        ``uid``/``gid`` when given (keystone must be able to enter what keysyncd made)."""
        path = str(self.directory)

        def making() -> None:
            attributes = SFTPAttributes()
            attributes.st_mode = mode
            request(self.sftp, CMD_MKDIR, path, attributes)
            if self.directory_mode() is None:
                raise paramiko.SFTPError("the directory was not created")
            if uid is not None or gid is not None:
                self._lsetstat(SFTPAttributes(), uid, gid)

        self._guard(f"creating {self.directory}", making)

    def _lsetstat(self, attributes: SFTPAttributes, uid: int | None, gid: int | None) -> None:
        """Set ``attributes`` and the owner ``uid``/``gid`` when given (the other kept) on the
        session's directory with lsetstat@openssh.com, which never follows a link swapped in."""
        path = str(self.directory)
        if uid is not None or gid is not None:
            current = self._stat(CMD_LSTAT, path)
            attributes.st_uid = current.uid if uid is None else uid
            attributes.st_gid = current.gid if gid is None else gid
        request(self.sftp, CMD_EXTENDED, "lsetstat@openssh.com", path, attributes)

    def move_to(self, source: str, target: NodeSession, name: str) -> None:
        """Rename ``source`` here over ``name`` in ``target``'s directory, atomically (same
        file system: a JWS public key is written in the private directory, then moved)."""
        self._guard(
            f"renaming into {target.directory / name}",
            self.sftp.posix_rename,
            self._path(source),
            target._path(name),
        )

    def clock_skew(self, clock: Callable[[], float]) -> float | None:
        """Return how many seconds ``clock`` (the controller's) is ahead of the node's, from the
        mtime the node gives an empty temp file created and removed now (within about a second), or
        None if it does not tell; never raises: the clock is a witness, not a step."""
        name = clock_probe_name()
        path = self._path(name)
        try:
            sent = clock()
            # empty and 0644: keystone opens every file in its directory (before it looks at
            # the name), so a probe it could not open would fail its token operations
            reply = self._create(path, PROBE_MODE)
            answered = clock()
        except Exception:
            return None
        if reply[0] != CMD_HANDLE:
            return None
        try:
            handle = handle_of(self.sftp, reply, "a file handle")
            stat_reply, _, removed = pipeline(
                self.sftp,
                [(CMD_FSTAT, (handle,)), (CMD_CLOSE, (handle,)), (CMD_REMOVE, (path,))],
            )
            created = attributes_of(expect(self.sftp, stat_reply, CMD_ATTRS, "attributes"))
            expect(self.sftp, removed, CMD_STATUS, "a status")
        except Exception:
            self.remove_quietly(name)
            return None
        if created.mtime is None:
            return None
        return (sent + answered) / 2 - (created.mtime + 0.5)

    def write_temp(self, content: bytes, uid: int | None, gid: int | None) -> str:
        """Upload ``content`` to a new exclusive temp file (0600 from creation); return its name.
        The owner is set before the caller renames it into place."""
        name = temp_name()
        path = self._path(name)
        created = False

        def writing() -> None:
            nonlocal created
            # Alone, and first: only its reply says whether this file is ours to remove.
            reply = self._create(path)
            if reply[0] != CMD_HANDLE:
                raise paramiko.SFTPError("expected a file handle")
            created = True
            handle = handle_of(self.sftp, reply, "a file handle")
            # Write, check the size, set the owner (all through the handle) and close, in
            # one round trip; the caller renames only after this returned.
            fill(self.sftp, handle, content, uid, gid)

        try:
            self._guard(f"writing {name}", writing)
        except NodeError:
            if created:  # never remove what was there before: exclusive creation refused it
                self.remove_quietly(name)
            raise
        return name

    def rename(self, source: str, target: str) -> None:
        """Atomically rename ``source`` over ``target`` (posix-rename@openssh.com)."""
        self._guard(
            f"renaming into {target}",
            self.sftp.posix_rename,
            self._path(source),
            self._path(target),
        )

    def remove(self, name: str) -> None:
        """Delete entry ``name`` (unlink: a symlink goes, never what it points to)."""
        self._guard(f"removing {name!a}", self.sftp.remove, self._path(name))

    def chmod_directory(self, mode: int, uid: int | None = None, gid: int | None = None) -> None:
        """Set ``mode``, and the owner when given, on the repository directory in one lsetstat (a
        mode without its owner would lock keystone out); key files are rewritten, never chmod-ed."""
        attributes = SFTPAttributes()
        attributes.st_mode = mode
        self._guard(f"changing the mode of {self.directory}", self._lsetstat, attributes, uid, gid)
