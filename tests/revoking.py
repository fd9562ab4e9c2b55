"""What the revocation watcher and kill -9 tests share (issue 22, acceptance): ``Watching``,
keystone on every node validating tokens in a bounded loop (rounds and seconds) while a
revocation runs, counting rejections and races apart; ``throughout``, which runs an action with
a watcher going from before it starts until it returns; ``start`` and ``wait_for_journal``,
for a real ``keysyncd revoke`` process to kill at a chosen instant."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 100_000  # bounds of one watcher: far above what a revocation of a few seconds needs
SECONDS = 120.0


@dataclass(kw_only=True)
class Watching:
    """keystone on every node of ``directories``, checking tokens in a loop until stopped (or
    its bounds pass); ``check`` (a subclass's) appends each token rejection to ``rejections``.
    A read failing because a file went between keystone's listing and its read is a race; any
    other error is keystone failing the request (a rejection), never a watcher silently gone."""

    directories: dict[str, Path]
    rounds: int = 0
    races: int = 0
    rejections: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        began = time.monotonic()
        while not self.stop.is_set() and self.rounds < ROUNDS:
            if time.monotonic() - began > SECONDS:
                break
            self.rounds += 1
            for name, directory in self.directories.items():
                try:
                    self.check(name, directory)
                except OSError:  # a file deleted between keystone's listing and its read
                    self.races += 1
                except Exception as exc:  # keystone fails the request: the token is rejected
                    self.rejections.append(f"{name}: {type(exc).__name__}")

    def check(self, name: str, directory: Path) -> None:
        """Check the tokens on node ``name`` (keystone reading ``directory``)."""
        raise NotImplementedError


def throughout(watcher: Watching, action: Callable[[], int]) -> int:
    """Return ``action()``'s exit code, run while ``watcher`` runs in a thread (started before,
    stopped and joined after)."""
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        return action()
    finally:
        watcher.stop.set()
        thread.join(timeout=30)


def start(config: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``keysyncd -c CONFIG revoke --repo fernet-tokens ARGS`` as its own process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = ["-c", str(config), "revoke", "--repo", "fernet-tokens", *args]
    return subprocess.Popen(
        [sys.executable, "-m", "keysyncd", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for_journal(config: Path, process: subprocess.Popen[bytes], limit: float) -> float:
    """Return how long after now the journal showed a revocation under way (or the process
    ended, or ``limit`` passed)."""
    path = config.parent / "state" / "repositories" / "fernet-tokens.json"
    began = time.monotonic()
    while time.monotonic() - began < limit and process.poll() is None:
        if '"revocation": {' in path.read_text():
            break
        time.sleep(0.001)
    return time.monotonic() - began
