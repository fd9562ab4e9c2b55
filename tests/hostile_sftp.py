"""A hostile node: a real SSH server (paramiko, in threads of the test process) with a host
key of its own, accepting the client's key, whose SFTP subsystem answers as a scenario says.

It speaks just enough SFTP v3 to be believed (INIT/VERSION, then one reply per request):
``answer(kind, request_id, body)`` returns the raw reply packets for each request.
"""

from __future__ import annotations

import io
import re
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
import yaml

from keysyncd.commands.cli import main
from keysyncd.testing.fleet import Fleet

Answer = Callable[[int, int, bytes], bytes]
LSTAT, OPENDIR, READDIR, STAT, FSTAT = 7, 11, 12, 17, 8
STATUS, HANDLE, NAME, ATTRS = 101, 102, 104, 105


def packet(kind: int, body: bytes) -> bytes:
    """Return one SFTP packet."""
    data = bytes([kind]) + body
    return struct.pack(">I", len(data)) + data


def u32(number: int) -> bytes:
    return struct.pack(">I", number)


def string(data: bytes) -> bytes:
    return u32(len(data)) + data


DIRECTORY_ATTRS = u32(0x4) + u32(0o040700)
FILE_ATTRS = u32(0x4 | 0x1) + struct.pack(">Q", 44) + u32(0o100600)


def status(request: int, code: int, message: bytes = b"") -> bytes:
    """Return an SSH_FXP_STATUS reply (code 0: OK, 1: EOF, 4: failure)."""
    return packet(STATUS, u32(request) + u32(code) + string(message) + string(b""))


def _exact(channel: paramiko.Channel, size: int) -> bytes:
    data = b""
    while len(data) < size:
        part = channel.recv(size - len(data))
        if not part:
            raise EOFError
        data += part
    return data


def _requests(channel: paramiko.Channel) -> Iterator[tuple[int, int, bytes]]:
    (length,) = struct.unpack(">I", _exact(channel, 4))
    _exact(channel, length)  # INIT
    channel.sendall(packet(2, u32(3)))  # VERSION 3
    for _ in range(1_000_000):  # bounded: a test never needs that many requests
        (length,) = struct.unpack(">I", _exact(channel, 4))
        data = _exact(channel, length)
        yield data[0], struct.unpack(">I", data[1:5])[0], data[5:]


class _Server(paramiko.ServerInterface):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        threading.Thread(target=self._serve, args=(channel,), daemon=True).start()
        return True

    def _serve(self, channel: paramiko.Channel) -> None:
        try:
            for kind, request, body in _requests(channel):
                channel.sendall(self.answer(kind, request, body))
        except (EOFError, OSError, paramiko.SSHException):
            pass  # the client went away: that is what a test waits for


class HostileNode:
    """A listening hostile SFTP node on 127.0.0.1; ``close()`` stops accepting."""

    def __init__(self, answer: Answer, key_dir: Path) -> None:
        key_dir.mkdir(parents=True, exist_ok=True)
        self.key = paramiko.Ed25519Key.from_private_key(_new_key(key_dir))
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port: int = self.sock.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def known_hosts_line(self) -> str:
        """Return this node's known_hosts entry."""
        return f"[127.0.0.1]:{self.port} {self.key.get_name()} {self.key.get_base64()}\n"

    def _accept(self) -> None:
        for _ in range(100):
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            transport = paramiko.Transport(connection)
            transport.add_server_key(self.key)
            self.transports.append(transport)
            transport.start_server(server=_Server(self.answer))

    def close(self) -> None:
        self.sock.close()
        for transport in self.transports:
            transport.close()


def _new_key(key_dir: Path) -> io.StringIO:
    path = key_dir / "host_key"
    if not path.exists():
        command = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)]
        subprocess.run(command, check=True)
    return io.StringIO(path.read_text())


# --- the hostile node beside a real fleet, as the integration tests drive it ----------------

CONNECT_TIMEOUT = 3.0
OPERATION_TIMEOUT = 2.0


def rss_mib() -> int:
    text = Path("/proc/self/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+)", text)
    assert found is not None, "no VmRSS line in /proc/self/status"
    return int(found.group(1)) >> 10


def honest(kind: int, request: int, body: bytes) -> bytes | None:
    """Return what an honest server says to the requests every scenario needs, else None."""
    if kind == LSTAT:
        return packet(ATTRS, u32(request) + DIRECTORY_ATTRS)
    if kind == OPENDIR:
        return packet(HANDLE, u32(request) + string(b"H"))
    return None


def add_node(fleet: Fleet, config: Path, port: int, known_hosts_line: str) -> None:
    document = yaml.safe_load(config.read_text())
    document["nodes"].append(
        {"name": "evil", "host": "127.0.0.1", "port": port, "path": "/srv/keys"}
    )
    config.write_text(yaml.safe_dump(document))
    with fleet.known_hosts.open("a") as known:
        known.write(known_hosts_line)


def verify_in_bounded_time(config: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``verify``; assert it ends within the node's own timeouts and memory; return its
    output (stdout and stderr)."""
    capsys.readouterr()
    before, started = rss_mib(), time.monotonic()
    assert main(["-c", str(config), "verify"]) == 1
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert elapsed < CONNECT_TIMEOUT + OPERATION_TIMEOUT + 3.0, elapsed
    assert rss_mib() - before < 100, "bounded memory"
    output = captured.out + captured.err
    assert "\x1b" not in output and "\x07" not in output, "no raw escape reaches a terminal"
    assert re.search(r"node1\s+in_sync", output), output
    return output
