"""Experiment behind a change request to keysyncd/io/remote/sftp.py, sftpwire.py and fleet.py:
pipelined SFTP. Not a benchmark of the product: it swaps four methods at run time.

Today every SFTP request waits for its reply before the next is sent: reading 3 key files
is OPEN, READ, READ (EOF), FSTAT, CLOSE per file, 15 round trips, each with a wake-up of
paramiko's transport thread, of the worker, and of sshd. Pipelined, the same is 2 round
trips: OPEN for every file, then READ + FSTAT + CLOSE for every file, each batch sent as
one SSH packet (one channel write). sshd answers a batch in one packet too, so both sides
handle about half the packets.

The variant installed by ``install()``:

* ``pipeline(sftp, requests)``: every request of a batch in one channel write, then the
  replies matched by request id (a reply out of order is still matched);
* ``NodeSession._read_directory``: OPENDIR, then READDIR + READDIR + CLOSE in one batch
  (a directory larger than two replies is listed again the current way);
* ``NodeSession.read_many(entries)``: the two batches above; a short read falls back to the
  current one-file-at-a-time ``read``;
* ``NodeSession.write_temp``: OPEN (exclusive, 0600), then WRITE + FSTAT (+ FSETSTAT when
  owner and group are both set) + CLOSE in one batch; the size check still precedes the
  rename, which stays its own round trip (phase order is unchanged);
* ``FleetAction._read_view``: ``read_many`` for the entries that need content.

Run (one fleet, the two variants alternating, in-process; keysyncd's own CPU per node):

    .venv/bin/python bench/pipelining_experiment.py --nodes 100 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import struct
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import paramiko
from paramiko.message import Message
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_DATA,
    CMD_FSETSTAT,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_NAME,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READ,
    CMD_READDIR,
    CMD_STATUS,
    CMD_WRITE,
    SFTP_EOF,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_READ,
    SFTP_FLAG_WRITE,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes

import keysyncd.io.remote.fleet as fleet_module
import keysyncd.io.remote.sftp as sftp_module
from keysyncd.actions.context import Run
from keysyncd.actions.distribute import sync_repository, verify_repository
from keysyncd.commands.cli import main as keysyncd_main
from keysyncd.config import load_config
from keysyncd.core.nodeplan import NodeView
from keysyncd.core.view import (
    MAX_KEY_FILE,
    Entry,
    EntryType,
    entry_type,
    needs_content,
    unread,
    with_content,
)
from keysyncd.core.vocabulary import Trigger
from keysyncd.errors import NodeError
from keysyncd.io.local.fsutil import temp_name
from keysyncd.io.remote.sftpwire import Attributes, attributes_of, request
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet

Request = tuple[int, tuple[object, ...]]
Session = sftp_module.NodeSession
ORIGINAL: dict[str, Any] = {
    "_read_directory": Session._read_directory,
    "write_temp": Session.write_temp,
    "read": Session.read,
    "_read_view": fleet_module.FleetAction._read_view,
}


def pipeline(sftp: paramiko.SFTPClient, requests: Sequence[Request]) -> list[tuple[int, Message]]:
    """Send ``requests`` in one channel write; return their replies in request order."""
    numbers, packets = [], []
    with sftp._lock:  # type: ignore[attr-defined]
        for kind, args in requests:
            message = Message()
            number = sftp.request_number
            message.add_int(number)
            for item in args:
                if isinstance(item, int64):
                    message.add_int64(item)
                elif isinstance(item, int):
                    message.add_int(item)
                elif isinstance(item, SFTPAttributes):
                    item._pack(message)  # type: ignore[attr-defined]
                else:
                    message.add_string(item)  # type: ignore[arg-type]
            sftp._expecting[number] = type(None)  # type: ignore[attr-defined]
            sftp.request_number += 1
            numbers.append(number)
            payload = message.asbytes()
            packets.append(struct.pack(">I", len(payload) + 1) + bytes([kind]) + payload)
    sftp._write_all(b"".join(packets))  # type: ignore[attr-defined]
    replies: dict[int, tuple[int, Message]] = {}
    while len(replies) < len(numbers):
        kind, data = sftp._read_packet()  # type: ignore[attr-defined]
        message = Message(data)
        number = message.get_int()
        with sftp._lock:  # type: ignore[attr-defined]
            sftp._expecting.pop(number, None)  # type: ignore[attr-defined]
        replies[number] = (kind, message)
    return [replies[number] for number in numbers]


def _check(sftp: paramiko.SFTPClient, kind: int, message: Message) -> None:
    """Raise what paramiko raises for an error status (nothing for OK or a non-status)."""
    if kind == CMD_STATUS:
        sftp._convert_status(message)  # type: ignore[attr-defined]


def _read_directory(self: Session, path: str) -> list[tuple[str, Attributes]]:
    ((kind, message),) = pipeline(self.sftp, [(CMD_OPENDIR, (path,))])
    _check(self.sftp, kind, message)
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError("expected a directory handle")
    handle = message.get_binary()
    replies = pipeline(
        self.sftp, [(CMD_READDIR, (handle,)), (CMD_READDIR, (handle,)), (CMD_CLOSE, (handle,))]
    )
    found: list[tuple[str, Attributes]] = []
    for kind, message in replies[:2]:
        if kind == CMD_STATUS:
            if message.get_int() == SFTP_EOF:
                return found
            raise paramiko.SFTPError("readdir failed")
        if kind != CMD_NAME:
            raise paramiko.SFTPError("expected a name response")
        for _ in range(message.get_int()):
            name = message.get_string().decode("utf-8", "surrogateescape")
            message.get_string()
            attributes = attributes_of(message)
            if name not in (".", ".."):
                found.append((name, attributes))
    result: list[tuple[str, Attributes]] = ORIGINAL["_read_directory"](self, path)
    return result  # larger than two replies: list it the current way


def read_many(self: Session, entries: Sequence[Entry]) -> list[bytes | None]:
    """Return the content of every entry (None for one that changed since the listing)."""
    if not entries:
        return []

    def reading() -> list[bytes | None]:
        flags, empty = SFTP_FLAG_READ, SFTPAttributes()
        opens = pipeline(
            self.sftp, [(CMD_OPEN, (self._path(e.name), flags, empty)) for e in entries]
        )
        handles = [message.get_binary() for kind, message in opens if kind == CMD_HANDLE]
        if len(handles) < len(entries):
            for handle in handles:
                with contextlib.suppress(Exception):
                    request(self.sftp, CMD_CLOSE, handle)
            for kind, message in opens:
                _check(self.sftp, kind, message)
            raise paramiko.SFTPError("expected a file handle")
        requests: list[Request] = []
        for handle in handles:
            requests.append((CMD_READ, (handle, int64(0), MAX_KEY_FILE + 1)))
            requests += [(CMD_FSTAT, (handle,)), (CMD_CLOSE, (handle,))]
        replies = pipeline(self.sftp, requests)
        contents: list[bytes | None] = []
        for index, entry in enumerate(entries):
            (read_kind, read), (stat_kind, stat_reply), _ = replies[3 * index : 3 * index + 3]
            if read_kind == CMD_DATA:
                content = read.get_string()
            elif read_kind == CMD_STATUS and read.get_int() == SFTP_EOF:
                content = b""
            else:
                raise paramiko.SFTPError("read failed")
            _check(self.sftp, stat_kind, stat_reply)
            opened = attributes_of(stat_reply)
            if len(content) < min(opened.size, MAX_KEY_FILE + 1):  # a short read: never here
                return [ORIGINAL["read"](self, e) for e in entries]
            same = (
                entry_type(opened.mode) is EntryType.FILE
                and (opened.size, opened.uid, opened.gid, opened.mtime)
                == (entry.size, entry.uid, entry.gid, entry.mtime)
                and len(content) == entry.size
            )
            contents.append(content if same else None)
        return contents

    result: list[bytes | None] = self._guard("reading keys", reading)
    return result


def write_temp(self: Session, content: bytes, uid: int | None, gid: int | None) -> str:
    name = temp_name()
    path = self._path(name)
    created = False

    def writing() -> None:
        nonlocal created
        attributes = SFTPAttributes()
        attributes.st_mode = 0o600
        flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL
        ((kind, message),) = pipeline(self.sftp, [(CMD_OPEN, (path, flags, attributes))])
        _check(self.sftp, kind, message)
        if kind != CMD_HANDLE:
            raise paramiko.SFTPError("expected a file handle")
        created = True
        handle = message.get_binary()
        requests: list[Request] = [(CMD_WRITE, (handle, int64(0), content)), (CMD_FSTAT, (handle,))]
        if uid is not None and gid is not None:
            owner = SFTPAttributes()
            owner.st_uid, owner.st_gid = uid, gid
            requests.append((CMD_FSETSTAT, (handle, owner)))
        elif uid is not None or gid is not None:
            raise NotImplementedError("this experiment sets both owner and group, or neither")
        replies = pipeline(self.sftp, [*requests, (CMD_CLOSE, (handle,))])
        for kind, message in replies:
            if kind == CMD_STATUS:
                _check(self.sftp, kind, message)
        current = attributes_of(replies[1][1])
        if current.size != len(content):
            raise OSError(f"short write ({current.size} of {len(content)} bytes)")

    try:
        self._guard(f"writing {name}", writing)
    except NodeError:
        if created:
            self.remove_quietly(name)
        raise
    return name


def _read_view(
    self: fleet_module.FleetAction, session: Session, expected: Mapping[int, str]
) -> NodeView:
    listing = session.list_directory()
    wanted = [entry for entry in listing.entries if needs_content(entry, expected)]
    contents = dict(zip((e.name for e in wanted), read_many(session, wanted), strict=True))
    entries = tuple(
        with_content(entry, contents[entry.name], self.kind.problem)
        if entry.name in contents
        else unread(entry)
        for entry in listing.entries
    )
    return NodeView(listing.directory_mode, entries, listing.temp_files)


def install() -> None:
    """Use the pipelined variant."""
    Session._read_directory = _read_directory  # type: ignore[method-assign]
    Session.write_temp = write_temp  # type: ignore[method-assign]
    fleet_module.FleetAction._read_view = _read_view  # type: ignore[method-assign]


def uninstall() -> None:
    """Use keysyncd as it is."""
    Session._read_directory = ORIGINAL["_read_directory"]  # type: ignore[method-assign]
    Session.write_temp = ORIGINAL["write_temp"]  # type: ignore[method-assign]
    fleet_module.FleetAction._read_view = ORIGINAL["_read_view"]  # type: ignore[method-assign]


def measure(nodes: int, rounds: int, root: Path) -> dict[str, list[tuple[float, float]]]:
    """Return {variant and action: [(CPU ms per node, wall s)]} over ``rounds`` rounds."""
    variants: dict[str, Callable[[], None]] = {"current": uninstall, "pipelined": install}
    results: dict[str, list[tuple[float, float]]] = {}
    with Fleet(root / "fleet", nodes, start_timeout=30 + nodes / 10) as fleet:
        path = fleet_config(fleet, root / "ctl", {"token_expiration": 1, "allow_expired_window": 0})
        with contextlib.redirect_stdout(io.StringIO()):
            for command in (["init"], ["rotate"]):
                assert keysyncd_main(["-c", str(path), *command]) == 0
        config = load_config(path)
        repository = config.repositories[0]
        for _ in range(rounds):
            for variant, use in variants.items():
                use()
                keys = {p.name: p.read_bytes() for p in (root / "ctl" / "keys").iterdir()}
                with contextlib.redirect_stdout(io.StringIO()):
                    assert keysyncd_main(["-c", str(path), "rotate"]) == 0
                for node in fleet.nodes:  # the nodes miss that rotation
                    for entry in node.directory.iterdir():
                        entry.unlink()
                    for name, content in keys.items():
                        (node.directory / name).write_bytes(content)
                        (node.directory / name).chmod(0o600)
                for action, run in (("sync", sync_repository), ("verify", verify_repository)):
                    cpu, wall = time.process_time(), time.perf_counter()
                    outcome = run(Run(config, repository, Trigger.CLI)).outcome
                    assert outcome == "ok", outcome
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                    results.setdefault(f"{action} {variant}", []).append((cpu / nodes * 1000, wall))
    uninstall()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keysyncd-pipelining-") as root:
        results = measure(args.nodes, args.rounds, Path(root))
    for name, runs in sorted(results.items()):
        cpu = statistics.median(run[0] for run in runs)
        wall = statistics.median(run[1] for run in runs)
        print(f"{args.nodes} nodes, {name:18}: keysyncd CPU {cpu:5.1f} ms/node, wall {wall:5.2f} s")


if __name__ == "__main__":
    main()
