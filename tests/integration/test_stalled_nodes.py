"""A node that stalls is reported ``timeout`` with its real duration, and costs only its own
timeout: a listener that accepts and never speaks, one that stops after its SSH banner
(mid-handshake), and a real node frozen in the middle of
an SFTP session (its sshd session processes stopped with SIGSTOP)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from keysyncd.actions.context import Run
from keysyncd.actions.distribute import sync_repository
from keysyncd.commands.cli import main
from keysyncd.config import load_config
from keysyncd.core.vocabulary import GOOD, Trigger
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from keysyncd.testing.processes import descendants

CONNECT_TIMEOUT = 3.0
OPERATION_TIMEOUT = 3.0


@contextlib.contextmanager
def silent_listener(greeting: bytes = b"") -> Iterator[int]:
    """Yield the port of a listener on 127.0.0.1 that accepts, sends ``greeting`` (nothing
    by default) and then never another byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                connection = server.accept()[0]
                held.append(connection)
                connection.sendall(greeting)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        server.close()


def configure(fleet: Fleet, root: Path, **ssh: float) -> Path:
    config = fleet_config(fleet, root)
    document = yaml.safe_load(config.read_text())
    document["ssh"].update(ssh)
    config.write_text(yaml.safe_dump(document))
    return config


def last_report(root: Path, action: str) -> dict:
    return json.loads(sorted((root / "reports").glob(f"*-{action}-*.json"))[-1].read_text())


@pytest.mark.parametrize(
    "greeting",
    [b"", b"SSH-2.0-OpenSSH_9.2p1\r\n"],
    ids=["silent", "stalls-mid-handshake"],  # after its banner: the key exchange never comes
)
def test_a_listener_that_never_speaks_times_out_alone(
    make_fleet, tmp_path: Path, greeting: bytes
) -> None:
    fleet = make_fleet(3)
    config = configure(fleet, tmp_path / "ctl", connect_timeout=CONNECT_TIMEOUT)
    assert main(["-c", str(config), "init"]) == 0
    with silent_listener(greeting) as port:
        document = yaml.safe_load(config.read_text())
        document["nodes"].append({"name": "mute", "host": "127.0.0.1", "port": port,
                                  "path": str(tmp_path / "mute")})  # fmt: skip
        config.write_text(yaml.safe_dump(document))
        key = fleet.known_hosts.read_text().splitlines()[0].split(" ", 1)[1]
        with fleet.known_hosts.open("a") as known:  # known, so the handshake is attempted
            known.write(f"[127.0.0.1]:{port} {key}\n")
        started = time.monotonic()
        assert main(["-c", str(config), "rotate", "--force"]) == 1
        elapsed = time.monotonic() - started
    report = last_report(tmp_path / "ctl", "rotate")
    mute = report["nodes"]["mute"]
    assert mute["reason"] == "timeout" and "connect_timeout" in mute["error"], mute
    assert CONNECT_TIMEOUT - 0.2 <= mute["duration"] <= CONNECT_TIMEOUT + 2.0, mute
    for name in ("node1", "node2", "node3"):
        assert report["nodes"][name]["status"] == "updated", report["nodes"][name]
    # the stall costs its own timeout once, not once per step or per node
    assert elapsed < CONNECT_TIMEOUT + 4.0, elapsed


def test_a_node_frozen_mid_session_times_out_and_converges_later(
    make_fleet, tmp_path: Path
) -> None:
    fleet = make_fleet(3)
    root = tmp_path / "ctl"
    config_path = configure(fleet, root, operation_timeout=OPERATION_TIMEOUT)
    assert main(["-c", str(config_path), "init"]) == 0
    assert main(["-c", str(config_path), "rotate"]) == 0
    (root / "keys" / "1").unlink()  # a local change: every node needs a push
    frozen: list[int] = []
    node2 = fleet.node("node2")

    def progress(phase: str, node: str, done: int, total: int) -> None:
        if phase == "inspect" and done == 0 and not frozen:  # every session is open now
            assert node2.pid is not None
            frozen.extend(descendants(node2.pid))
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)

    config = load_config(config_path)
    started = time.monotonic()
    try:
        result = sync_repository(
            Run(config, config.repositories[0], Trigger.CLI, progress=progress)
        )
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    elapsed = time.monotonic() - started
    assert frozen, "node2 had session processes to freeze"
    stalled = result.nodes["node2"]
    assert stalled.reason == "timeout", stalled
    assert OPERATION_TIMEOUT - 0.2 <= stalled.duration <= OPERATION_TIMEOUT + 2.0
    for name in ("node1", "node3"):
        assert result.nodes[name].status in GOOD, result.nodes[name]
    assert elapsed < OPERATION_TIMEOUT + 4.0, elapsed
    deadline = time.monotonic() + 5.0
    while descendants(node2.pid or 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert descendants(node2.pid or 0) == [], "the frozen session ended once thawed"
    assert main(["-c", str(config_path), "sync"]) == 0
    local = sorted(os.listdir(root / "keys"))
    assert sorted(os.listdir(node2.directory)) == local
