"""SSH transport: one paramiko connection per node per action, SFTP only.

Host keys are checked strictly against the configured known_hosts (parsed once
per action, not per connection); authentication is by key file or agent only.
Every failure becomes ``NodeError(node, reason, detail)`` with a short reason.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.sftp import (
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_HANDLE,
    CMD_OPEN,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_WRITE,
)
from paramiko.sftp_attr import SFTPAttributes
from paramiko.sftp_file import SFTPFile

from keysyncd.config import NodeConfig, SshConfig
from keysyncd.errors import NodeError
from keysyncd.fsutil import TEMP_PREFIX, temp_name
from keysyncd.repository import MAX_KEY_FILE

_ERRNO_REASONS = {
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EROFS: "permission",
    errno.ENOSPC: "disk_full",
    errno.EDQUOT: "disk_full",
}


@dataclass(frozen=True)
class RemoteEntry:
    """One directory entry on a node: name, mode bits, size, owner."""

    name: str
    mode: int
    size: int
    uid: int | None
    gid: int | None


class Credentials:
    """The parsed known_hosts and client keys, loaded once and shared by every connection."""

    def __init__(self, ssh: SshConfig) -> None:
        self.ssh = ssh
        self.host_keys = paramiko.HostKeys()
        if ssh.known_hosts is not None:
            try:
                self.host_keys.load(str(ssh.known_hosts))
            except OSError as error:
                raise NodeError(
                    "*", "host_key", f"cannot read known_hosts {ssh.known_hosts}: {error.strerror}"
                ) from None
        self.keys: list[paramiko.PKey] = []
        if ssh.identity_file is not None:
            try:
                self.keys.append(paramiko.PKey.from_path(str(ssh.identity_file)))
            except (OSError, paramiko.SSHException) as error:
                raise NodeError(
                    "*",
                    "auth",
                    f"cannot load identity_file {ssh.identity_file}: {type(error).__name__}",
                ) from None
        else:
            self.keys.extend(paramiko.Agent().get_keys())


def classify(node: str, error: BaseException, doing: str) -> NodeError:
    """Return the NodeError for ``error`` raised while ``doing`` something on ``node``."""
    if isinstance(error, NodeError):
        return error
    if isinstance(error, socket.timeout | TimeoutError):
        return NodeError(node, "timeout", f"timed out while {doing}")
    if isinstance(error, paramiko.AuthenticationException):
        return NodeError(node, "auth", f"authentication failed while {doing}")
    if isinstance(error, ConnectionRefusedError):
        return NodeError(node, "unreachable", f"connection refused while {doing}")
    if isinstance(error, OSError) and error.errno in _ERRNO_REASONS:
        return NodeError(node, _ERRNO_REASONS[error.errno], f"{error.strerror} while {doing}")
    if isinstance(error, EOFError | paramiko.SSHException | ConnectionError):
        return NodeError(node, "unreachable", f"connection lost while {doing}: {error}")
    if isinstance(error, OSError):
        detail = error.strerror or str(error) or type(error).__name__
        if error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET):
            return NodeError(node, "unreachable", f"{detail} while {doing}")
        return NodeError(node, "error", f"{detail} while {doing}")
    return NodeError(node, "error", f"{type(error).__name__} while {doing}")


class NodeSession:
    """An open SFTP session to one node, rooted at its repository directory."""

    def __init__(
        self, node: NodeConfig, transport: paramiko.Transport, directory: Path, timeout: float
    ) -> None:
        self.node = node
        self.directory = directory
        self._transport = transport
        self.sftp = paramiko.SFTPClient.from_transport(transport)
        assert self.sftp is not None  # noqa: S101 - from_transport returns None only when closed
        self.sftp.get_channel().settimeout(timeout)

    def _path(self, name: str) -> str:
        return str(self.directory / name)

    def _guard(self, doing: str, call, *args):  # type: ignore[no-untyped-def]
        try:
            return call(*args)
        except Exception as error:
            raised = classify(self.node.name, error, doing)
            if raised.reason == "error":
                # SFTP v3 reports ENOSPC and EROFS as a bare "Failure"; ask the filesystem.
                condition = self.filesystem_condition()
                if condition == "read-only":
                    raised = NodeError(
                        self.node.name, "permission", f"read-only file system while {doing}"
                    )
                elif condition == "full":
                    raised = NodeError(self.node.name, "disk_full", f"no space left while {doing}")
            raise raised from None

    def list_entries(self) -> tuple[int, list[RemoteEntry]]:
        """Return (directory mode, entries) of the repository directory."""

        def listing() -> tuple[int, list[RemoteEntry]]:
            mode = stat.S_IMODE(self.sftp.stat(str(self.directory)).st_mode or 0)
            entries = [
                RemoteEntry(a.filename, a.st_mode or 0, a.st_size or 0, a.st_uid, a.st_gid)
                for a in self.sftp.listdir_attr(str(self.directory))
            ]
            return mode, entries

        return self._guard(f"listing {self.directory}", listing)

    def read(self, name: str) -> bytes:
        """Return the content of file ``name`` (at most MAX_KEY_FILE + 1 bytes)."""

        def reading() -> bytes:
            with self.sftp.open(self._path(name), "rb") as handle:
                return handle.read(MAX_KEY_FILE + 1)

        return self._guard(f"reading {name}", reading)

    def write_temp(self, content: bytes, uid: int | None, gid: int | None) -> str:
        """Upload ``content`` to a new exclusive temp file (0600 from creation); return its name.

        The owner is set before the caller renames it into place.
        """
        name = temp_name()
        path = self._path(name)

        def writing() -> None:
            attributes = SFTPAttributes()
            attributes.st_mode = 0o600
            flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL
            kind, message = self.sftp._request(CMD_OPEN, path, flags, attributes)
            if kind != CMD_HANDLE:
                raise paramiko.SFTPError("expected a file handle")
            with SFTPFile(self.sftp, message.get_binary(), "wb") as handle:
                handle.write(content)
            # A failed write can go unnoticed on some servers; a short file must never be
            # renamed into place (no node may see a partial key).
            current = self.sftp.stat(path)
            if current.st_size != len(content):
                raise OSError(f"short write ({current.st_size} of {len(content)} bytes)")
            if uid is not None or gid is not None:
                self.sftp.chown(
                    path,
                    current.st_uid if uid is None else uid,
                    current.st_gid if gid is None else gid,
                )

        try:
            self._guard(f"writing {name}", writing)
        except NodeError:
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
        """Delete file ``name``."""
        self._guard(f"removing {name}", self.sftp.remove, self._path(name))

    def remove_quietly(self, name: str) -> None:
        """Delete ``name`` if possible; used to clean up after a failure."""
        # best effort: the failure that made this necessary is already being reported
        with contextlib.suppress(Exception):
            self.sftp.remove(self._path(name))

    def chmod(self, name: str | None, mode: int) -> None:
        """Set ``mode`` on file ``name`` (or on the directory when None)."""
        path = str(self.directory) if name is None else self._path(name)
        self._guard(f"changing the mode of {name or self.directory}", self.sftp.chmod, path, mode)

    def filesystem_condition(self) -> str | None:
        """Return ``read-only``, ``full`` or None for the node's filesystem.

        Uses the statvfs@openssh.com extension; None when the server does not offer it.
        """
        try:
            kind, message = self.sftp._request(
                CMD_EXTENDED, "statvfs@openssh.com", str(self.directory)
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
        """Close the SFTP channel and the connection."""
        try:
            self.sftp.close()
        finally:
            self._transport.close()


def _host_key_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def connect(node: NodeConfig, directory: Path, credentials: Credentials) -> NodeSession:
    """Open a verified, authenticated SFTP session to ``node``; raise NodeError if impossible.

    Nothing is sent to a node whose host key is unknown or changed.
    """
    ssh = credentials.ssh
    try:
        sock = socket.create_connection((node.host, node.port), timeout=ssh.connect_timeout)
    except Exception as error:
        raise classify(node.name, error, "connecting") from None
    transport = paramiko.Transport(sock)
    try:
        _handshake(node, transport, credentials)
        return NodeSession(node, transport, directory, ssh.operation_timeout)
    except Exception as error:
        transport.close()
        raise classify(node.name, error, "connecting") from None


def _handshake(node: NodeConfig, transport: paramiko.Transport, credentials: Credentials) -> None:
    ssh = credentials.ssh
    name = _host_key_name(node.host, node.port)
    known = credentials.host_keys.lookup(name)
    if not known:
        raise NodeError(node.name, "host_key", f"host key of {name} is not in {ssh.known_hosts}")
    # Ask for the key types we know for this host, as ssh(1) does, so a node with
    # several host keys presents one we can check.
    wanted = set(known.keys())
    if "ssh-rsa" in wanted:
        wanted |= {"rsa-sha2-512", "rsa-sha2-256"}
    options = transport.get_security_options()
    options.key_types = [t for t in options.key_types if t in wanted] or list(wanted)
    transport.banner_timeout = ssh.connect_timeout
    transport.auth_timeout = ssh.connect_timeout
    transport.start_client(timeout=ssh.connect_timeout)
    offered = transport.get_remote_server_key()
    expected = known.get(offered.get_name())
    if expected is None or expected != offered:
        raise NodeError(
            node.name,
            "host_key",
            f"host key of {name} does not match {ssh.known_hosts} "
            f"(offered {offered.get_name()} {offered.fingerprint})",
        )
    for key in credentials.keys:
        try:
            transport.auth_publickey(ssh.user, key)
        except paramiko.AuthenticationException:
            continue
        if transport.is_authenticated():
            return
    raise NodeError(node.name, "auth", f"public key authentication as {ssh.user!r} was refused")


def is_temp_name(name: str) -> bool:
    """Return True for keysyncd's temp file names."""
    return name.startswith(TEMP_PREFIX)
