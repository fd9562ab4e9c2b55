"""A controller for the drift, watch and local-guard tests: its config (fast verify, metrics
over HTTP and in a textfile), its fleet, and its daemon (``keysyncd run``), waited on through
observable state only (``tests/e2e/waiting.py``); the ``controller`` fixture is in
tests/e2e/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.e2e.waiting import wait_until

VERIFY_INTERVAL = 1


T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def files_of(directory: Path) -> dict[str, bytes]:
    return {n: (directory / n).read_bytes() for n in sorted(os.listdir(directory)) if n.isdigit()}


class Controller:
    """A controller config, its fleet and its running daemon."""

    def __init__(self, fleet: Fleet, root: Path) -> None:
        self.fleet = fleet
        self.root = root
        self.port = free_port()
        self.config = fleet_config(
            fleet,
            root,
            repository={"schedule": "0 0 1 1 *", "token_expiration": 1},
            drift={"verify_interval": VERIFY_INTERVAL, "on_remote_drift": "repair"},
            metrics={"listen": f"127.0.0.1:{self.port}", "textfile": str(root / "metrics.prom")},
        )
        self.keys = root / "keys"
        self.log = root / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[Controller]:
        """Init the repository, start the daemon; yield this controller, then stop it."""
        assert main(["-c", str(self.config), "init"]) == 0
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "keysyncd", "-c", str(self.config), "run"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.wait(lambda: (self.root / "state" / "daemon.json").exists(), "the daemon")

    def wait(self, condition: Callable[[], T], what: str) -> T:
        """Return the first truthy ``condition()`` (bounded); fail at once if the daemon exits."""
        return wait_until(condition, what, gone=self.gone, context=self.context)

    def gone(self) -> str | None:
        code = None if self.process is None else self.process.poll()
        return None if code is None else f"the daemon exited ({code})"

    def context(self) -> str:
        return f"daemon log:\n{self.log.read_text(errors='replace')}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                assert self.process.wait(timeout=40) == 0
            finally:
                if self.process.poll() is None:
                    self.process.kill()
                    self.process.wait(timeout=10)

    def reports(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted((self.root / "reports").glob("*.json")):
            try:
                found.append(json.loads(path.read_text()))
            except ValueError:
                continue  # being replaced right now: atomic rename, read it next time
        return found

    def reports_since(self, count: int) -> list[dict[str, Any]]:
        return self.reports()[count:]

    def in_sync(self) -> bool:
        local = files_of(self.keys)
        return all(files_of(node.directory) == local for node in self.fleet.nodes)


KEYSTONE_ROTATE = (
    "import sys; sys.path.insert(0, {root!r});"
    "from tests.keystone_compat import fernet_rotate; fernet_rotate({keys!r}, 3)"
)


def metrics_over_http(port: int) -> dict[str, dict[tuple, float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return parse(response.read().decode())


def parse(text: str) -> dict[str, dict[tuple, float]]:
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found
