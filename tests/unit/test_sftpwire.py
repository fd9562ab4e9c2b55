"""The SFTP wire without a server: pipelined batches matched by request id, and replies
parsed with bounds (a count or a length that the reply does not hold is an error, never a
wait, a loop or an allocation)."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable
from typing import Any, cast

import paramiko
import pytest
from paramiko.message import Message
from paramiko.sftp import CMD_ATTRS, CMD_CLOSE, CMD_FSTAT, CMD_HANDLE, CMD_STATUS

from keysyncd.io.remote.sftpwire import MAX_BATCH, attributes_of, pipeline, string_of


class FakeChannel:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(data)


class FakeClient:
    """What ``pipeline`` uses of paramiko's SFTPClient; the server's replies are scripted:
    ``answer(request ids of the batch just written)`` returns (type, id, body) to send."""

    def __init__(self, answer: Any) -> None:
        self._lock = threading.Lock()
        self._expecting: dict[int, object] = {}
        self.request_number = 1
        self.sock = FakeChannel()
        self.answer = answer
        self.queue: list[tuple[int, bytes]] = []
        self.answered = 0  # writes answered so far

    def _read_packet(self) -> tuple[int, bytes]:
        if not self.queue and self.answered < len(self.sock.writes):
            self.answered += 1
            ids = [struct.unpack(">I", p[5:9])[0] for p in split(self.sock.writes[-1])]
            self.queue = [(kind, struct.pack(">I", n) + body) for kind, n, body in self.answer(ids)]
        if not self.queue:
            raise EOFError  # what paramiko raises when the channel closed
        return self.queue.pop(0)


def split(data: bytes) -> Iterable[bytes]:
    while data:
        (length,) = struct.unpack(">I", data[:4])
        yield data[: 4 + length]
        data = data[4 + length :]


def client(answer: Any) -> paramiko.SFTPClient:
    return cast(paramiko.SFTPClient, FakeClient(answer))


def handle_reply(number: int) -> tuple[int, int, bytes]:
    return CMD_HANDLE, number, struct.pack(">I", 1) + bytes([number % 256])


def test_replies_in_any_order_are_returned_in_request_order() -> None:
    sftp = client(lambda ids: [handle_reply(n) for n in reversed(ids)])
    replies = pipeline(sftp, [(CMD_FSTAT, (b"h%d" % n,)) for n in range(5)])
    assert [kind for kind, _ in replies] == [CMD_HANDLE] * 5
    assert [string_of(message) for _, message in replies] == [bytes([n]) for n in range(1, 6)]
    fake: Any = sftp
    assert len(fake.sock.writes) == 1, "one batch, one channel write"
    assert fake._expecting == {}


def test_a_large_batch_is_sent_in_writes_of_at_most_max_batch_requests() -> None:
    sftp = client(lambda ids: [handle_reply(n) for n in ids])
    assert len(pipeline(sftp, [(CMD_CLOSE, (b"h",))] * (MAX_BATCH + 1))) == MAX_BATCH + 1
    fake: Any = sftp
    assert [len(list(split(write))) for write in fake.sock.writes] == [MAX_BATCH, 1]


@pytest.mark.parametrize(
    "answer",
    [
        lambda ids: [handle_reply(ids[0]), handle_reply(ids[0]), handle_reply(ids[1])],
        lambda ids: [handle_reply(ids[0]), handle_reply(ids[1] + 7)],
        lambda ids: [handle_reply(0), *map(handle_reply, ids)],
    ],
    ids=["duplicate", "unknown", "never-sent"],
)
def test_a_reply_to_no_outstanding_request_is_an_error(answer: Any) -> None:
    sftp = client(answer)
    with pytest.raises(paramiko.SFTPError, match="not outstanding"):
        pipeline(sftp, [(CMD_CLOSE, (b"a",)), (CMD_CLOSE, (b"b",))])


def test_a_late_reply_to_an_abandoned_request_is_skipped() -> None:
    sftp = client(lambda ids: [handle_reply(ids[0] - 1), *map(handle_reply, ids)])
    fake: Any = sftp
    fake._expecting[fake.request_number] = type(None)  # a request whose wait was abandoned
    fake.request_number += 1
    assert len(pipeline(sftp, [(CMD_CLOSE, (b"a",))])) == 1
    assert fake._expecting == {}


def test_a_connection_lost_mid_batch_is_reported_as_such() -> None:
    sftp = client(lambda ids: [handle_reply(ids[0])])
    with pytest.raises(paramiko.SSHException, match="dropped"):
        pipeline(sftp, [(CMD_CLOSE, (b"a",)), (CMD_CLOSE, (b"b",))])


@pytest.mark.parametrize(
    "body",
    [
        struct.pack(">I", 0x1),  # a size announced, not sent
        struct.pack(">II", 0x4, 0o600)[:6],  # permissions cut in half
        struct.pack(">II", 0x80000000, 1) + struct.pack(">I", 100) + b"short",
        struct.pack(">II", 0x80000000, 0xFFFFFFFF),  # 2**32 - 1 pairs claimed
    ],
    ids=["size", "mode", "extended-string", "extended-count"],
)
def test_attributes_cut_short_or_absurd_are_refused(body: bytes) -> None:
    with pytest.raises(paramiko.SFTPError):
        attributes_of(Message(body))


def test_a_string_longer_than_its_limit_or_its_reply_is_refused() -> None:
    assert string_of(Message(struct.pack(">I", 3) + b"abc"), limit=3) == b"abc"
    with pytest.raises(paramiko.SFTPError, match="at most 2"):
        string_of(Message(struct.pack(">I", 3) + b"abc"), limit=2)
    with pytest.raises(paramiko.SFTPError, match="cut short"):
        string_of(Message(struct.pack(">I", 0xFFFFFFFF) + b"abc"))


def test_status_and_attributes_replies_keep_their_types() -> None:
    attrs = struct.pack(">IQI", 0x5, 44, 0o100600)
    sftp = client(lambda ids: [(CMD_STATUS, ids[0], b"\0" * 12), (CMD_ATTRS, ids[1], attrs)])
    (status, _), (kind, message) = pipeline(sftp, [(CMD_CLOSE, (b"a",)), (CMD_FSTAT, (b"a",))])
    assert (status, kind) == (CMD_STATUS, CMD_ATTRS)
    assert attributes_of(message).size == 44
