"""A node that answers like no honest SFTP server: each is cut off within its own timeouts,
never costs the controller unbounded memory or time, and none of its words reach a terminal
unescaped. The hostile node is a real SSH server (tests/hostile_sftp.py) beside a real fleet.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from keysyncd.testing.fleet import Fleet
from tests.hostile_sftp import (
    ATTRS,
    FILE_ATTRS,
    LSTAT,
    NAME,
    OPERATION_TIMEOUT,
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

ESCAPES = b"\x1b]0;owned\x07\x1b[2J\x1b[32mALL NODES IN SYNC\x1b[0m"


def scenario(name: str) -> Answer:
    listed = {"count": 0}

    def answer(kind: int, request: int, body: bytes) -> bytes:
        if name == "slow":
            time.sleep(OPERATION_TIMEOUT - 0.3)  # every reply just in time
        if kind == LSTAT and name == "attribute-count":  # 2**32-1 extended pairs, none sent
            return packet(ATTRS, u32(request) + u32(0x80000000) + u32(0xFFFFFFFF))
        if kind == LSTAT and name == "escape-status":
            return status(request, 4, ESCAPES)
        if kind == READDIR and name == "name-count":  # 2**32-1 names claimed, none sent
            return packet(NAME, u32(request) + u32(0xFFFFFFFF))
        if kind == READDIR:  # never EOF: one fresh name per reply
            listed["count"] += 1
            entry = string(b"n%d" % listed["count"]) + string(b"") + FILE_ATTRS
            return packet(NAME, u32(request) + u32(1) + entry)
        return honest(kind, request, body) or status(request, 0)

    return answer


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("attribute-count", "error: SFTPError"),
        ("name-count", "error: SFTPError"),
        ("endless-listing", "timeout: inspect took longer than operation_timeout"),
        ("slow", "timeout:"),
        ("escape-status", "\\x1b"),
    ],
)
def test_a_hostile_sftp_server_is_cut_off_alone(
    hostile_world: tuple[Fleet, Path],
    tmp_path: Path,
    name: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fleet, config = hostile_world
    node = HostileNode(scenario(name), tmp_path / "evil")
    try:
        add_node(fleet, config, node.port, node.known_hosts_line())
        output = verify_in_bounded_time(config, capsys)
    finally:
        node.close()
    line = next(line for line in output.splitlines() if line.strip().startswith("evil"))
    assert "failed" in line and expected in line, line


def test_a_hostile_banner_is_shown_escaped(
    hostile_world: tuple[Fleet, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Anything on a node's address speaks before its host key is checked: its banner."""
    fleet, config = hostile_world
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []

    def accept() -> None:
        for _ in range(4):
            try:
                connection, _ = server.accept()
            except OSError:
                return
            # paramiko quotes the version (up to the first space) in its error
            connection.sendall(b"SSH-" + ESCAPES.replace(b" ", b"_") + b"-evil\r\n")
            held.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    try:
        key = fleet.known_hosts.read_text().split()[1:3]
        add_node(
            fleet,
            config,
            server.getsockname()[1],
            f"[127.0.0.1]:{server.getsockname()[1]} {key[0]} {key[1]}\n",
        )
        output = verify_in_bounded_time(config, capsys)
    finally:
        server.close()
        for connection in held:
            connection.close()
    line = next(line for line in output.splitlines() if line.strip().startswith("evil"))
    assert "failed" in line and "\\x1b" in line, line
