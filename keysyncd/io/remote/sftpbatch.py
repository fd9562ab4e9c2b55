"""SFTP operations sent as pipelined batches (a directory listed, key files read, a temp file
filled) in one or two round trips instead of one per request: each round trip costs about
100-150 µs of keysyncd's CPU. Wire only; what a failure means is ``sftpread``'s."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import paramiko
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_FSETSTAT,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READ,
    CMD_READDIR,
    CMD_STATUS,
    CMD_WRITE,
    SFTP_FLAG_READ,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes

from keysyncd.core.names import MAX_KEY_FILE
from keysyncd.core.view import Entry, EntryType, entry_type
from keysyncd.io.remote.sftpwire import (
    MAX_HANDLE,
    Attributes,
    Reply,
    Request,
    attributes_of,
    expect,
    names_of,
    pipeline,
    request,
    string_of,
)

FILES_PER_BATCH = 32  # files a node holds open at once for one read_files batch
MAX_WRITE = 32_768  # bytes in one WRITE request (paramiko's own chunk size)


class ShortRead(Exception):
    """A READ answered with fewer bytes than the file holds (SFTP allows it; OpenSSH does
    not do it for a small file): read the file again, one request at a time."""


def handle_of(sftp: paramiko.SFTPClient, reply: Reply, what: str) -> bytes:
    """Return the handle a reply to OPEN or OPENDIR carries; raise as ``expect`` does."""
    return string_of(expect(sftp, reply, CMD_HANDLE, what), MAX_HANDLE)


def read_directory(sftp: paramiko.SFTPClient, path: str) -> list[tuple[str, Attributes]]:
    """Return (name, lstat attributes) of every entry of ``path``: two READDIRs and the CLOSE in one
    batch, then one at a time if not at the end; raise SFTPError past MAX_DIRECTORY_ENTRIES."""
    (opened,) = pipeline(sftp, [(CMD_OPENDIR, (path,))])
    handle = handle_of(sftp, opened, "a directory handle")
    listing: list[Request] = [(CMD_READDIR, (handle,)), (CMD_READDIR, (handle,))]
    replies = pipeline(sftp, [*listing, (CMD_CLOSE, (handle,))])
    found: list[tuple[str, Attributes]] = []
    try:
        for reply in replies[: len(listing)]:
            found += names_of(sftp, reply, len(found))
    except EOFError:  # SSH_FX_EOF: the listing is complete
        return found
    return _read_directory_slowly(sftp, path)


def _read_directory_slowly(sftp: paramiko.SFTPClient, path: str) -> list[tuple[str, Attributes]]:
    (opened,) = pipeline(sftp, [(CMD_OPENDIR, (path,))])
    handle = handle_of(sftp, opened, "a directory handle")
    found: list[tuple[str, Attributes]] = []
    try:
        while True:  # names_of stops a server that never says EOF; the step deadline, one
            # that sends empty replies for ever
            (reply,) = pipeline(sftp, [(CMD_READDIR, (handle,))])
            found += names_of(sftp, reply, len(found))
    except EOFError:
        return found
    finally:
        with contextlib.suppress(Exception):  # the listing, or its failure, is what counts
            request(sftp, CMD_CLOSE, handle)


def trusted(entry: Entry, opened: Attributes, content: bytes) -> bytes | None:
    """Return ``content`` if the file read (FSTAT through the handle) is the ``entry`` listed, read
    whole; else None: a name swapped for a link is neither trusted nor digested."""
    same = (
        entry_type(opened.mode) is EntryType.FILE
        and (opened.size, opened.uid, opened.gid, opened.mtime)
        == (entry.size, entry.uid, entry.gid, entry.mtime)
        and len(content) == entry.size
    )
    return content if same else None


def read_files(
    sftp: paramiko.SFTPClient,
    paths: Sequence[str],
    entries: Sequence[Entry],
    cap: int = MAX_KEY_FILE,
) -> list[bytes | Exception | None]:
    """Return, for each listed regular file ``entries[i]`` at ``paths[i]``, at most ``cap`` + 1
    bytes of it, None if what was opened is not what was listed (``trusted``), or the exception
    reading it raised (ShortRead: read it again alone). Two round trips per FILES_PER_BATCH files;
    raise only for a failure of the whole batch."""
    outcomes: list[bytes | Exception | None] = []
    for start in range(0, len(entries), FILES_PER_BATCH):
        end = start + FILES_PER_BATCH
        outcomes += _read_batch(sftp, paths[start:end], entries[start:end], cap)
    return outcomes


def _read_batch(
    sftp: paramiko.SFTPClient, paths: Sequence[str], entries: Sequence[Entry], cap: int
) -> list[bytes | Exception | None]:
    reading = SFTPAttributes()
    opens = pipeline(sftp, [(CMD_OPEN, (path, SFTP_FLAG_READ, reading)) for path in paths])
    handles: list[bytes | Exception] = []
    for reply in opens:
        try:
            handles.append(handle_of(sftp, reply, "a file handle"))
        except Exception as error:  # this file's failure, kept for the caller
            handles.append(error)
    requests: list[Request] = []
    for handle in handles:
        if isinstance(handle, bytes):
            requests.append((CMD_READ, (handle, int64(0), cap + 1)))
            requests += [(CMD_FSTAT, (handle,)), (CMD_CLOSE, (handle,))]
    replies = iter(pipeline(sftp, requests))
    outcomes: list[bytes | Exception | None] = []
    for entry, handle in zip(entries, handles, strict=True):
        if isinstance(handle, Exception):
            outcomes.append(handle)
            continue
        data, status, _ = next(replies), next(replies), next(replies)  # CLOSE: nothing to say
        try:
            outcomes.append(_checked(sftp, entry, data, status, cap))
        except Exception as error:  # this file's failure, kept for the caller
            outcomes.append(error)
    return outcomes


def _checked(
    sftp: paramiko.SFTPClient, entry: Entry, data: Reply, status: Reply, cap: int
) -> bytes | None:
    try:
        content = string_of(expect(sftp, data, CMD_DATA, "data"), cap + 1)
    except EOFError:  # SSH_FX_EOF: the file is empty
        content = b""
    opened = attributes_of(expect(sftp, status, CMD_ATTRS, "attributes"))
    if len(content) < min(opened.size, cap + 1):
        raise ShortRead
    return trusted(entry, opened, content)


def fill(
    sftp: paramiko.SFTPClient, handle: bytes, content: bytes, uid: int | None, gid: int | None
) -> None:
    """Write ``content`` through ``handle``, check its size, set its owner through the handle (never
    swapped for a link) and close it, in one round trip (two if only ``uid`` or ``gid`` is given);
    raise OSError if the file is short: a partial key is never renamed into place."""
    writes: list[Request] = [
        (CMD_WRITE, (handle, int64(offset), content[offset : offset + MAX_WRITE]))
        for offset in range(0, len(content), MAX_WRITE)
    ]
    partial = (uid is None) != (gid is None)
    owning: list[Request] = []
    if uid is not None and gid is not None:
        owning.append((CMD_FSETSTAT, (handle, _owner(uid, gid))))
    closing: list[Request] = [] if partial else [(CMD_CLOSE, (handle,))]
    try:
        replies = pipeline(sftp, [*writes, (CMD_FSTAT, (handle,)), *owning, *closing])
        for reply in replies[: len(writes)]:
            expect(sftp, reply, CMD_STATUS, "a status")
        current = attributes_of(expect(sftp, replies[len(writes)], CMD_ATTRS, "attributes"))
        # A failed write can go unnoticed on some servers; the size is what counts.
        if current.size != len(content):
            raise OSError(f"short write ({current.size} of {len(content)} bytes)")
        for reply in replies[len(writes) + 1 : len(writes) + 1 + len(owning)]:
            expect(sftp, reply, CMD_STATUS, "a status")
        if partial:
            owner = current.uid if uid is None else uid
            group = current.gid if gid is None else gid
            if owner is None or group is None:
                raise OSError("the node did not report the temp file's owner")
            (reply,) = pipeline(sftp, [(CMD_FSETSTAT, (handle, _owner(owner, group)))])
            expect(sftp, reply, CMD_STATUS, "a status")
    finally:
        if partial:
            with contextlib.suppress(Exception):  # as paramiko's own close: errors ignored
                request(sftp, CMD_CLOSE, handle)


def _owner(uid: int, gid: int) -> SFTPAttributes:
    attributes = SFTPAttributes()
    attributes.st_uid, attributes.st_gid = uid, gid
    return attributes
