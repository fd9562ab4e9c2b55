"""The SFTP connection to one node, rooted at a directory (metered, failures classified),
and its reads: listings with lstat semantics and names as keystone decodes them, and key
files (a symlink's target is only stat-ed; only regular files are read, checked through
the open handle). Writes: ``sftp``."""

from __future__ import annotations

import contextlib
import errno
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import paramiko
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_FSTAT,
    CMD_LSTAT,
    CMD_STAT,
)

from keysyncd.config import NodeConfig
from keysyncd.core.access import PathInfo, ancestors
from keysyncd.core.names import MAX_KEY_FILE, is_temp_name, key_index
from keysyncd.core.view import Entry, EntryType, entry_type
from keysyncd.errors import NodeError
from keysyncd.io.remote.sftpbatch import ShortRead, read_directory, read_files, trusted
from keysyncd.io.remote.sftpmeter import MeteredChannel, record
from keysyncd.io.remote.sftpwire import (
    Attributes,
    Request,
    attributes_of,
    classify,
    expect,
    pipeline,
    request,
)

MAX_KEY_ENTRIES = 1_000  # entries at key names: more is an attack or an accident
T = TypeVar("T")


@dataclass(frozen=True)
class Listing:
    """A node's repository directory: its mode, the entries at key names (lstat semantics,
    symlink targets examined with stat), and keysyncd's temp files found there."""

    directory_mode: int
    entries: tuple[Entry, ...]
    temp_files: tuple[str, ...]
    directory: PathInfo | None = None  # the directory's path, owner and group
    ancestors: tuple[PathInfo, ...] = ()  # the directories above it, when asked for


class ReadingSession:
    """An SFTP session to a node, rooted at ``directory``, and its reads (writes: NodeSession)."""

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
        """Close the connection at once (a step ran past its deadline), freeing blocked calls."""
        with contextlib.suppress(Exception):
            self._transport.close()

    def filesystem_condition(self) -> str | None:
        """Return ``read-only``, ``full`` or None (statvfs@openssh.com not offered)."""
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

    def directory_mode(self) -> int | None:
        """Return the mode of the session's directory, None if missing; raise NodeError if it is no
        directory: following a symlink would let whoever planted it choose where keysyncd writes."""
        info = self.directory_and_ancestors(False)[0]
        return None if info is None else info.mode

    def directory_and_ancestors(
        self, above: bool = True
    ) -> tuple[PathInfo | None, tuple[PathInfo, ...]]:
        """Return the directory's PathInfo (lstat; None if missing) and, when ``above``, those of
        the existing directories above it from ``/`` (stat, as keystone), in one round trip; raise
        NodeError as ``directory_mode``, or if one above cannot be looked at."""
        path = str(self.directory)
        upper = ancestors(path) if above else ()

        def looking() -> tuple[PathInfo | None, tuple[PathInfo, ...]]:
            requests: list[Request] = [(CMD_STAT, (top,)) for top in upper]
            replies = pipeline(self.sftp, [*requests, (CMD_LSTAT, (path,))])
            found: list[PathInfo] = []
            for top, reply in zip(upper, replies, strict=False):
                try:
                    info = attributes_of(expect(self.sftp, reply, CMD_ATTRS, "attributes"))
                except FileNotFoundError:  # nothing below it exists either
                    break
                found.append(PathInfo(top, stat.S_IMODE(info.mode), info.uid, info.gid))
            try:
                info = attributes_of(expect(self.sftp, replies[-1], CMD_ATTRS, "attributes"))
            except FileNotFoundError:
                return None, tuple(found)
            kind = entry_type(info.mode)
            if kind is not EntryType.DIRECTORY:
                raise NodeError(
                    self.node.name,
                    "invalid_entry",
                    f"{self.directory} is a {kind.value}, not a directory; keysyncd never "
                    "follows it: make it a directory (or configure the real one)",
                )
            mode = stat.S_IMODE(info.mode)
            return PathInfo(path, mode, info.uid, info.gid), tuple(found)

        return self._guard(f"looking at {self.directory}", looking)

    def list_directory(self, above: bool = False) -> Listing:
        """Return the entries at key names and keysyncd's temp files (and ``above``: the directories
        above); raise NodeError if unreadable, no directory, or over MAX_KEY_ENTRIES entries."""
        return self._listing(lambda name: key_index(name) is not None, above)

    def list_every_entry(self) -> tuple[int, tuple[Entry, ...], tuple[str, ...]]:
        """Return (mode, every name's Entry, temp files): keystone reads all of a JWS public dir."""
        listing = self._listing(lambda name: True, False)
        return listing.directory_mode, listing.entries, listing.temp_files

    def _listing(self, keyed: Callable[[str], bool], above: bool) -> Listing:
        """Return the Listing of entries whose names are ``keyed`` (directories ``above`` too)."""

        def listing() -> Listing:
            info, upper = self.directory_and_ancestors(above)
            if info is None:
                raise FileNotFoundError(errno.ENOENT, "no such directory")
            entries, temps = [], []
            # not paramiko's listdir: a name that is not UTF-8 makes it raise (blocking the node)
            for name, attributes in read_directory(self.sftp, str(self.directory)):
                if is_temp_name(name):
                    temps.append(name)
                if keyed(name):
                    entries.append((name, attributes))
            if len(entries) > MAX_KEY_ENTRIES:
                raise NodeError(
                    self.node.name,
                    "invalid_entry",
                    f"{len(entries)} entries in {self.directory} (more than "
                    f"{MAX_KEY_ENTRIES}): no key repository looks like this; clean it up",
                )
            listed = tuple(self._entry(name, attributes) for name, attributes in entries)
            return Listing(info.mode, listed, tuple(temps), info, upper)

        return self._guard(f"listing {self.directory}", listing)

    def _entry(self, name: str, attributes: Attributes) -> Entry:
        """Return a key-named entry's Entry; a symlink's target is only stat-ed (no FIFO blocks)."""
        kind = entry_type(attributes.mode)
        target = target_size = None
        if kind is EntryType.SYMLINK:
            try:
                pointed = self._stat(CMD_STAT, self._path(name))
                target, target_size = entry_type(pointed.mode), pointed.size
            except (OSError, paramiko.SFTPError):  # dangling, a loop, or not ours to see
                target = EntryType.MISSING
        return Entry(
            name=name,
            type=kind,
            mode=stat.S_IMODE(attributes.mode),
            size=attributes.size,
            uid=attributes.uid,
            gid=attributes.gid,
            target=target,
            target_size=target_size,
            mtime=attributes.mtime,
        )

    def read(self, entry: Entry, cap: int = MAX_KEY_FILE) -> bytes | None:
        """Return the content of regular file ``entry`` (at most ``cap`` + 1 bytes), or None if what
        was opened (FSTAT through the handle) is not what was listed: a name swapped for a link to
        another file is dropped unread."""

        def reading() -> bytes | None:
            with self.sftp.open(self._path(entry.name), "rb") as handle:
                content = handle.read(cap + 1)
                opened = self._stat(CMD_FSTAT, handle.handle)
            return trusted(entry, opened, content)

        return self._guard(f"reading {entry.name!a}", reading)

    def read_many(self, entries: Sequence[Entry], cap: int = MAX_KEY_FILE) -> list[bytes | None]:
        """Return what ``read`` returns for each of ``entries``, in two round trips per
        FILES_PER_BATCH; raise the NodeError ``read`` would for the first that cannot be read."""
        paths = [self._path(entry.name) for entry in entries]
        outcomes = self._guard("reading key files", read_files, self.sftp, paths, entries, cap)
        contents: list[bytes | None] = []
        for entry, outcome in zip(entries, outcomes, strict=True):
            if isinstance(outcome, ShortRead):
                contents.append(self.read(entry, cap))
            elif isinstance(outcome, Exception):
                raise self._failure(f"reading {entry.name!a}", outcome)
            else:
                contents.append(outcome)
        return contents
