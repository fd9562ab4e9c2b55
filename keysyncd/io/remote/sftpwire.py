"""SFTP on the wire: requests paramiko's public API lacks, pipelined batches, replies parsed
with bounds (a hostile server can make no parser here allocate or loop without bound), and
``classify``: what a failure on a node means, never in the server's words. The private
paramiko members used are listed in ``keysyncd.io.remote.paramiko_contract``."""

from __future__ import annotations

import errno
import io
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import paramiko
from paramiko.message import Message
from paramiko.sftp import CMD_NAME, CMD_STATUS, int64
from paramiko.sftp_attr import SFTPAttributes

from keysyncd.errors import NodeError

MAX_EXTENDED = 64  # extended attributes in one reply (OpenSSH sends none)
MAX_HANDLE = 256  # SFTP v3: a handle is at most 256 bytes
MAX_DIRECTORY_ENTRIES = 100_000  # entries of any name: more is no key repository
MAX_NAMES_PER_REPLY = 10_000  # OpenSSH sends about 100 names per READDIR reply
# Requests sent in one channel write. Their replies (at most a few KiB each here) stay far
# inside one SSH channel window, so neither side can block writing while the other does.
MAX_BATCH = 96
Request = tuple[int, tuple[object, ...]]  # (SFTP request type, its arguments)
Reply = tuple[int, Message]  # (SFTP reply type, the reply after its request id)


def request(sftp: paramiko.SFTPClient, kind: int, *args: object) -> tuple[int, Message]:
    """Send one SFTP request and return (reply type, message). paramiko's public API lacks what
    keysyncd needs (exclusive create with a mode, names as bytes, statvfs, pipelining): this module
    alone uses its private request machinery."""
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
    """Return the next attributes in ``message``; raise SFTPError for a reply no honest server sends
    (unlike paramiko, stop at MAX_EXTENDED extended attributes and at the reply's end)."""
    _need(message, 4)
    flags = message.get_int()
    fields = 8 * bool(flags & 0x1) + 8 * bool(flags & 0x2) + 4 * bool(flags & 0x4)
    _need(message, fields + 8 * bool(flags & 0x8))
    size = message.get_int64() if flags & 0x1 else 0
    uid, gid = (message.get_int(), message.get_int()) if flags & 0x2 else (None, None)
    mode = message.get_int() if flags & 0x4 else 0
    mtime = None
    if flags & 0x8:
        message.get_int()  # atime
        mtime = message.get_int()
    if flags & 0x80000000:
        _need(message, 4)
        count = message.get_int()
        if count > MAX_EXTENDED:
            raise paramiko.SFTPError(f"a reply claims {count} extended attributes")
        for _ in range(2 * count):
            string_of(message)
    return Attributes(mode, size, uid, gid, mtime)


def _need(message: Message, size: int) -> None:
    """Raise SFTPError unless ``message`` holds ``size`` more bytes."""
    packet = message.packet
    here = packet.tell()
    end = packet.seek(0, io.SEEK_END)
    packet.seek(here)
    if end - here < size:
        raise paramiko.SFTPError("a reply cut short")


def string_of(message: Message, limit: int | None = None) -> bytes:
    """Return the next string in ``message``; raise SFTPError past ``limit`` or the reply."""
    _need(message, 4)
    length = message.get_int()
    if limit is not None and length > limit:
        raise paramiko.SFTPError(f"a reply holds {length} bytes where at most {limit} fit")
    _need(message, length)
    return message.get_bytes(length)


# --- pipelining: a batch of requests in one write, replies matched by request id -----------


def _client(sftp: paramiko.SFTPClient) -> Any:
    """Return ``sftp`` typed for its private request machinery (see ``request``)."""
    return sftp


def _packet(number: int, kind: int, args: tuple[object, ...]) -> bytes:
    """Return one SFTP request packet, its arguments encoded as paramiko encodes them."""
    message = Message()
    message.add_int(number)
    for item in args:
        if isinstance(item, int64):
            message.add_int64(item)
        elif isinstance(item, int):
            message.add_int(item)
        elif isinstance(item, SFTPAttributes):
            cast(Any, item)._pack(message)  # as paramiko packs them (its private packer)
        elif isinstance(item, bytes | str):
            message.add_string(item)
        else:
            raise TypeError(f"an SFTP request argument cannot be a {type(item).__name__}")
    payload = message.asbytes()
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def pipeline(sftp: paramiko.SFTPClient, requests: Sequence[Request]) -> list[Reply]:
    """Send ``requests`` (up to MAX_BATCH per channel write) and return their replies in request
    order, matched by request id; raise SFTPError for a reply to no request outstanding (nothing the
    server says can be trusted after it). Error statuses are returned, not raised (``expect``)."""
    replies: list[Reply] = []
    for start in range(0, len(requests), MAX_BATCH):
        replies += _batch(sftp, requests[start : start + MAX_BATCH])
    return replies


def _batch(sftp: paramiko.SFTPClient, requests: Sequence[Request]) -> list[Reply]:
    client = _client(sftp)
    numbers: list[int] = []
    packets: list[bytes] = []
    with client._lock:
        for kind, args in requests:
            number = client.request_number
            client.request_number += 1
            # Registered as paramiko registers its own: if this batch is abandoned, paramiko's
            # next request skips the replies still on their way.
            client._expecting[number] = type(None)
            numbers.append(number)
            packets.append(_packet(number, kind, args))
    sftp.sock.sendall(b"".join(packets))
    waiting = set(numbers)
    replies: dict[int, Reply] = {}
    while waiting:  # each reply ends a wait, or raises: at most len(numbers) + stale ones
        try:
            kind, data = client._read_packet()
        except EOFError as error:
            raise paramiko.SSHException(f"Server connection dropped: {error}") from None
        message = Message(data)
        _need(message, 4)
        number = message.get_int()
        with client._lock:
            outstanding = client._expecting.pop(number, None) is not None
        if number in waiting and outstanding:
            waiting.discard(number)
            replies[number] = (kind, message)
        elif not outstanding:
            raise paramiko.SFTPError(f"a reply to request {number}, which is not outstanding")
        # else: a late reply to a request an earlier failure abandoned (paramiko skips it too)
    return [replies[number] for number in numbers]


def expect(sftp: paramiko.SFTPClient, reply: Reply, kind: int, what: str) -> Message:
    """Return the message of ``reply`` if it is of ``kind`` (CMD_STATUS: OK); raise what paramiko
    raises for an error status (IOError, EOFError at the end), SFTPError for another reply."""
    got, message = reply
    if got == CMD_STATUS:
        _client(sftp)._convert_status(message)  # raises for anything but OK
    if got != kind:
        raise paramiko.SFTPError(f"expected {what}")
    return message


def names_of(sftp: paramiko.SFTPClient, reply: Reply, listed: int) -> list[tuple[str, Attributes]]:
    """Return (name, lstat attributes) of every entry of a READDIR reply but ``.`` and ``..``, names
    decoded as keystone's Python would (surrogateescape); raise EOFError at the end, SFTPError past
    MAX_DIRECTORY_ENTRIES with the ``listed`` ones."""
    message = expect(sftp, reply, CMD_NAME, "a name response")
    _need(message, 4)
    count = message.get_int()
    if count > MAX_NAMES_PER_REPLY or listed + count > MAX_DIRECTORY_ENTRIES:
        raise paramiko.SFTPError(f"the directory has more than {MAX_DIRECTORY_ENTRIES} entries")
    found = []
    for _ in range(count):
        name = string_of(message).decode("utf-8", "surrogateescape")
        string_of(message)  # the "ls -l" long name: unused
        attributes = attributes_of(message)
        if name not in (".", ".."):
            found.append((name, attributes))
    return found


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
    if isinstance(error, paramiko.SFTPError) and str(error):
        # keysyncd's own words on a reply no honest server sends (never the server's text)
        return NodeError(node, "error", f"SFTPError while {doing}: {error}")
    return NodeError(node, "error", f"{type(error).__name__} while {doing}")
