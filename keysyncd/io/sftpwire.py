"""SFTP on the wire: requests paramiko's public API lacks, replies parsed with bounds, and
every failure turned into a NodeError with a reason an operator can act on."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

import paramiko
from paramiko.message import Message

from keysyncd.errors import NodeError

MAX_EXTENDED = 64  # extended attributes in one reply (OpenSSH sends none)
_ERRNO_REASONS = {
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EROFS: "permission",
    errno.ENOSPC: "disk_full",
    errno.EDQUOT: "disk_full",
}


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


def request(sftp: paramiko.SFTPClient, kind: int, *args: object) -> tuple[int, Message]:
    """Send one SFTP request and return (reply type, message).

    paramiko's public API lacks what keysyncd needs (an exclusive create with its mode from
    the first instant, a readdir that keeps names as bytes, statvfs), so this is the one
    place that uses its private request primitive.
    """
    # private API: see the docstring
    reply: tuple[int, Message] = sftp._request(kind, *args)  # type: ignore[attr-defined]
    return reply


@dataclass(frozen=True)
class Attributes:
    """The file attributes an SFTP v3 server sends (lstat, stat or fstat)."""

    mode: int = 0
    size: int = 0
    uid: int | None = None
    gid: int | None = None
    mtime: int | None = None


def attributes_of(message: Message) -> Attributes:
    """Return the attributes that come next in ``message``; raise SFTPError for a reply no
    honest server sends. paramiko's own parser believes any count of extended attributes
    (2**32 - 1 of them keep a CPU busy for hours); this one stops at MAX_EXTENDED."""
    flags = message.get_int()
    size = message.get_int64() if flags & 0x1 else 0
    uid, gid = (message.get_int(), message.get_int()) if flags & 0x2 else (None, None)
    mode = message.get_int() if flags & 0x4 else 0
    mtime = None
    if flags & 0x8:
        message.get_int()  # atime
        mtime = message.get_int()
    if flags & 0x80000000:
        count = message.get_int()
        if count > MAX_EXTENDED:
            raise paramiko.SFTPError(f"a reply claims {count} extended attributes")
        for _ in range(count):
            message.get_string()
            message.get_string()
    return Attributes(mode, size, uid, gid, mtime)
