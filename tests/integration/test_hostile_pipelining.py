"""A node that answers keysyncd's pipelined SFTP batches like no honest server: out of
order, twice, to requests never sent, cut short, or never. Each reply is matched to its own
request whatever the order; any other answer fails that node alone, with a one-line error
that says what was wrong, within its operation_timeout, and never lets a reply stand for
the answer to another request.

The hostile node (tests/hostile_sftp.py) lists one key file, ``1``, and serves it: replies
to READDIR, READ and FSTAT are held back and sent when the batch's CLOSE arrives (the last
request of every batch keysyncd pipelines), in the order the scenario says.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from keysyncd.testing.fleet import Fleet
from tests.hostile_sftp import (
    ATTRS,
    FILE_ATTRS,
    FSTAT,
    HANDLE,
    NAME,
    READDIR,
    Answer,
    HostileNode,
    add_node,
    honest,
    packet,
    status,
    string,
    u32,
    verify_in_bounded_time,
)

OPEN, CLOSE, READ = 3, 4, 5
DATA = 103
CONTENT = base64.urlsafe_b64encode(bytes(range(32)))  # a Fernet key of the node's own: 44 bytes
LISTED = string(b"1") + string(b"-rw------- 1") + FILE_ATTRS


def served(kind: int, request: int, body: bytes, listed: bool) -> bytes:
    """Return what an honest node holding the key file ``1`` (CONTENT) answers; ``listed``:
    whether its listing already gave the name (the next READDIR says EOF)."""
    if kind == READDIR:
        return status(request, 1) if listed else packet(NAME, u32(request) + u32(1) + LISTED)
    if kind == OPEN:
        return packet(HANDLE, u32(request) + string(b"F"))
    if kind == READ:
        return packet(DATA, u32(request) + string(CONTENT))
    if kind == FSTAT:
        return packet(ATTRS, u32(request) + FILE_ATTRS)
    return honest(kind, request, body) or status(request, 0)


def scenario(name: str) -> Answer:
    """Return a node answering batches as ``name`` says (see the module docstring)."""
    held: list[bytes] = []
    readdirs = {"count": 0}

    def answer(kind: int, request: int, body: bytes) -> bytes:
        readdirs["count"] += kind == READDIR  # keysyncd asks twice per listing
        reply = served(kind, request, body, listed=readdirs["count"] % 2 == 0)
        if kind not in (READDIR, READ, FSTAT, CLOSE):
            return reply
        if kind != CLOSE:
            held.append(reply)
            return b""
        batch, held[:] = [*held, reply], []
        return b"".join(flush(name, batch))

    return answer


def flush(name: str, batch: list[bytes]) -> list[bytes]:
    """Return the held replies of a batch (its CLOSE's last) as scenario ``name`` sends them."""
    first_id = batch[0][5:9]
    if name == "reordered":
        return batch[::-1]
    if name == "duplicate-id":
        return [batch[0], batch[0], *batch[1:]]
    if name == "unknown-id":  # the first reply answers a request 1000 later
        unknown = u32(struct.unpack(">I", first_id)[0] + 1000)
        return [batch[0][:5] + unknown + batch[0][9:], *batch[1:]]
    if name == "data-cut-short" and batch[0][4] == DATA:  # 44 bytes announced, 10 sent
        return [packet(DATA, first_id + u32(len(CONTENT)) + CONTENT[:10]), *batch[1:]]
    if name == "close-never-answered":
        return batch[:-1]
    if name == "packet-cut-short":  # a length that promises more than ever comes
        return [struct.pack(">I", 1000) + batch[0][4:]]
    return batch


def verified(
    name: str, hostile_world: tuple[Fleet, Path], root: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[str, dict[str, Any]]:
    """Run ``verify`` with the hostile node ``name``; return (its output line, its report)."""
    fleet, config = hostile_world
    node = HostileNode(scenario(name), root / "evil")
    try:
        add_node(fleet, config, node.port, node.known_hosts_line())
        output = verify_in_bounded_time(config, capsys)
    finally:
        node.close()
    line = next(line for line in output.splitlines() if line.strip().startswith("evil"))
    reports = sorted((config.parent / "reports").glob("*-verify-*.json"))
    return line, json.loads(reports[-1].read_text())["nodes"]["evil"]


def test_replies_out_of_order_are_each_matched_to_their_own_request(
    hostile_world: tuple[Fleet, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listing and reading answered backwards: the node's key 1 is seen with its own digest
    (a reply matched to the wrong request would fail the node or change what it holds)."""
    line, report = verified("reordered", hostile_world, tmp_path, capsys)
    assert report["digests"] == {"1": hashlib.sha256(CONTENT).hexdigest()}, report
    assert "SFTPError" not in line and "timeout" not in line, line


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("duplicate-id", "SFTPError while listing /srv/keys: a reply to request"),
        ("unknown-id", "SFTPError while listing /srv/keys: a reply to request"),
        ("data-cut-short", "SFTPError while reading '1': a reply cut short"),
        ("close-never-answered", "timeout"),
        ("packet-cut-short", "timeout"),
    ],
)
def test_a_batch_answered_wrongly_fails_that_node_alone(
    hostile_world: tuple[Fleet, Path],
    tmp_path: Path,
    name: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    line, report = verified(name, hostile_world, tmp_path, capsys)
    assert "failed" in line and expected in line, line
    assert report["status"] == "failed" and report["digests"] is None, report
