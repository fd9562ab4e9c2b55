"""Slow clients against the bounded metrics listener: a client that sends a byte now and then
is never silent for IDLE_TIMEOUT, so each connection also has a deadline in all
(CONNECTION_DEADLINE). MAX_CONNECTIONS such clients must not lock scrapes out past it.
Runs about 14 s (bounded: every loop counts its rounds, every socket has a timeout).
"""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.error
from pathlib import Path

from keysyncd.io.runtime.metrics import (
    CONNECTION_DEADLINE,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    serve_metrics,
)
from tests.unit.test_metrics_listener import config_listening, free_port, scrape


def test_trickling_clients_are_cut_at_the_deadline_and_scrapes_work(tmp_path: Path) -> None:
    port = free_port()
    config = config_listening(tmp_path, f"127.0.0.1:{port}")
    server = serve_metrics(lambda: config)
    clients: list[socket.socket] = []
    try:
        for _ in range(MAX_CONNECTIONS):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            clients.append(client)
        request = b"GET /metrics HTTP/1.0\r\nX-Slow: " + b"a" * 1000
        step = IDLE_TIMEOUT / 2.5
        rounds = int((CONNECTION_DEADLINE + IDLE_TIMEOUT / 2) / step) + 1  # past the deadline
        for position in range(rounds):  # one byte per client every IDLE_TIMEOUT/2.5 s
            for client in clients:
                with contextlib.suppress(OSError):  # cut by the server: what we wait for
                    client.sendall(request[position : position + 1])
            time.sleep(step)
        # every trickling client was cut at its deadline
        still_open = 0
        for client in clients:
            client.setblocking(False)
            try:
                still_open += client.recv(1) != b""  # b"": the server closed it
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass  # reset by the server: closed
        failures = []
        for _ in range(3):
            try:
                scrape(port)
            except (urllib.error.URLError, ConnectionError, OSError) as error:
                failures.append(repr(error))
        assert still_open == 0, f"{still_open} trickling clients outlived the deadline"
        assert not failures, f"scrapes refused: {failures}"
    finally:
        for client in clients:
            with contextlib.suppress(OSError):
                client.close()
        server.shutdown()
        server.server_close()
