"""The metrics listener against real sockets on 127.0.0.1: idle clients are dropped, open
connections are capped (and with them the daemon's threads), scrapes keep working, and an
empty host binds every address as config.yaml says.

Every wait is bounded; where a test asserts something about time it says so.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from keysyncd.config import Config, parse_config
from keysyncd.io.runtime.metrics import (
    CONNECTION_THREAD,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    BoundedServer,
    serve_metrics,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config_listening(root: Path, listen: str) -> Config:
    document = {
        "state_dir": str(root / "state"),
        "report_dir": str(root / "reports"),
        "repositories": [{"name": "r", "path": str(root / "keys")}],
        "metrics": {"listen": listen},
    }
    return parse_config(document, root / "config.yaml")


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[BoundedServer, int]]:
    port = free_port()
    config = config_listening(tmp_path, f"127.0.0.1:{port}")
    server = serve_metrics(lambda: config)
    try:
        yield server, port
    finally:
        server.shutdown()
        server.server_close()


def scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body: bytes = response.read()
        return body


def idle_connection(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.settimeout(IDLE_TIMEOUT + 10)  # a failure bound: the server must close first
    return client


def closed_by_server(client: socket.socket) -> bool:
    """Return True if the server closed ``client`` (EOF or reset), waiting at most its timeout."""
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def connection_threads() -> int:
    """Return how many threads serve a metrics connection now (other tests' leftover
    threads, ending meanwhile, would make a count of all threads wrong)."""
    return sum(t.name == CONNECTION_THREAD for t in threading.enumerate())


def test_an_idle_connection_is_dropped_within_the_timeout(
    listener: tuple[BoundedServer, int],
) -> None:
    _, port = listener
    client = idle_connection(port)
    started = time.monotonic()
    with client:
        assert closed_by_server(client)
    # a property about time: the server, not the client's own timeout, ended it, within
    # IDLE_TIMEOUT plus scheduling slack on a loaded machine
    assert time.monotonic() - started < IDLE_TIMEOUT + 5


def test_connections_beyond_the_cap_are_closed_and_threads_stay_bounded(
    listener: tuple[BoundedServer, int],
) -> None:
    _, port = listener
    extra = 8
    clients = [idle_connection(port) for _ in range(MAX_CONNECTIONS)]
    try:
        # the first MAX_CONNECTIONS each got a thread; wait (bounded) until they all run
        deadline = time.monotonic() + 10
        while connection_threads() < MAX_CONNECTIONS:
            assert time.monotonic() < deadline, "the capped connections were never served"
            time.sleep(0.05)
        refused = [idle_connection(port) for _ in range(extra)]
        for client in refused:
            # a property about time: closed promptly, not after the idle timeout
            client.settimeout(3)
            with client:
                assert closed_by_server(client)
        assert connection_threads() <= MAX_CONNECTIONS
    finally:
        for client in clients:
            client.close()


def test_a_scrape_works_while_idle_connections_are_held(
    listener: tuple[BoundedServer, int],
) -> None:
    _, port = listener
    clients = [idle_connection(port) for _ in range(MAX_CONNECTIONS - 1)]
    try:
        assert b"keysyncd_nodes" in scrape(port)
    finally:
        for client in clients:
            client.close()


def test_idle_clients_filling_every_slot_only_delay_the_next_scrape(
    listener: tuple[BoundedServer, int],
) -> None:
    _, port = listener
    clients = [idle_connection(port) for _ in range(MAX_CONNECTIONS)]
    try:
        for client in clients:  # the idle timeout frees every slot
            assert closed_by_server(client)
        assert b"keysyncd_nodes" in scrape(port)
    finally:
        for client in clients:
            client.close()


def test_an_empty_host_binds_every_address(tmp_path: Path) -> None:
    port = free_port()
    config = config_listening(tmp_path, f":{port}")
    server = serve_metrics(lambda: config)
    try:
        host = server.socket.getsockname()[0]
        assert host in ("::", "0.0.0.0")
        if server.socket.family == socket.AF_INET6:  # dual stack: IPv4 clients too
            assert server.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        assert b"keysyncd_nodes" in scrape(port)  # tests connect to 127.0.0.1 only
    finally:
        server.shutdown()
        server.server_close()
