"""A keystone-style reader on the nodes never loses a key across 50 rotate + sync cycles.

Keystone re-reads its repository on every token operation: it lists the directory,
then reads every integer-named file. Two readers watch the fleet:

* a deterministic one on node1, driven by the push phases themselves: it lists the
  directory when a phase starts and reads the files when that phase has ended, so
  every cycle its listing and its reads straddle phase 1, and then phase 2;
* a free-running thread on node2 that reads as fast as it can, straddling whatever
  it happens to straddle.

Every read must see only whole, valid keys and decrypt a token made with the primary
from before the cycle and one made with the primary after it. A read whose window
spans both phases of one sync is allowed to tear (as with keystone's own rotate);
such reads are counted and excluded, everything else must hold.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from keysyncd.actions.context import Run
from keysyncd.actions.distribute import rotate_repository
from keysyncd.commands.cli import main
from keysyncd.config import load_config
from keysyncd.core.vocabulary import Trigger
from keysyncd.io.local.lock import exclusive
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.keystone_compat import key_names

CYCLES = 50


def read_keys(directory: Path, names: list[str]) -> MultiFernet:
    """Keystone's second step: read each listed file and build a MultiFernet.

    A file deleted since the listing is skipped (keystone's isfile() check); an empty or
    partial file is a failure. Keys are judged independently of keysyncd's own code: each must
    be what ``cryptography.fernet.Fernet`` accepts (keystone builds exactly that from it).
    """
    keys = {}
    for name in names:
        path = directory / name
        if not path.is_file():  # keystone: os.path.isfile(), then open()
            continue
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            continue  # removed between the check and the read, as keystone also races
        try:
            Fernet(content)
        except (ValueError, TypeError) as error:
            raise AssertionError(f"reader saw {name}: not a Fernet key ({error})") from None
        keys[int(name)] = content
    return MultiFernet([Fernet(keys[i]) for i in sorted(keys, reverse=True)])


class Cycle:
    """The tokens of the current cycle and a counter of phase boundaries."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: tuple[bytes, bytes] = (b"", b"")
        self.boundaries = 0  # +1 at each phase start and each phase end

    def snapshot(self) -> tuple[tuple[bytes, bytes], int]:
        with self.lock:
            return self.tokens, self.boundaries


def spans_a_whole_sync(start: int, end: int) -> bool:
    """Return True if a window between boundary counts overlaps phase 1 and phase 2 of one sync.

    Boundaries per push: 4k+1 phase 1 starts, 4k+2 ends, 4k+3 phase 2 starts, 4k+4 ends.
    """
    for k in range(start // 4, end // 4 + 1):
        overlaps_phase1 = start < 4 * k + 2 and end >= 4 * k + 1
        overlaps_phase2 = start < 4 * k + 4 and end >= 4 * k + 3
        if overlaps_phase1 and overlaps_phase2:
            return True
    return False


def check(fernet: MultiFernet, tokens: tuple[bytes, bytes], where: str) -> None:
    for label, token in zip(("before", "after"), tokens, strict=True):
        try:
            fernet.decrypt(token)
        except InvalidToken:
            raise AssertionError(f"{where}: lost the primary from {label} the cycle") from None


def test_reader_never_loses_a_key_over_50_cycles(make_fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet: Fleet = make_fleet(3)
    config_path = fleet_config(fleet, tmp_path / "ctl")
    assert main(["-c", str(config_path), "init"]) == 0
    config = load_config(config_path)
    repository = config.repositories[0]
    local = repository.path
    deterministic_dir, free_dir = fleet.node("node1").directory, fleet.node("node2").directory
    cycle = Cycle()
    stats = {"free_reads": 0, "free_torn_allowed": 0, "straddled": {"phase 1": 0, "phase 2": 0}}
    failures: list[str] = []
    stop = threading.Event()
    pending: dict[str, tuple[list[str], tuple[bytes, bytes]]] = {}

    def on_progress(phase: str, node: str, done: int, total: int) -> None:
        if phase not in ("phase 1", "phase 2"):
            return
        if done == 0:  # the phase starts: the deterministic reader lists now
            with cycle.lock:
                cycle.boundaries += 1
            pending[phase] = (key_names(deterministic_dir), cycle.tokens)
        elif done == total:  # the phase has ended everywhere: it reads now
            with cycle.lock:
                cycle.boundaries += 1
            names, tokens = pending.pop(phase)
            check(read_keys(deterministic_dir, names), tokens, f"node1 straddling {phase}")
            stats["straddled"][phase] += 1

    def free_reader() -> None:
        deadline = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < deadline:
            tokens, start = cycle.snapshot()
            names = key_names(free_dir)
            try:
                fernet = read_keys(free_dir, names)
                _, end = cycle.snapshot()
                if spans_a_whole_sync(start, end):
                    stats["free_torn_allowed"] += 1
                    continue
                check(fernet, tokens, "node2 free-running reader")
            except Exception as error:  # anything a reader trips on is a failure, not a quiet end
                failures.append(f"{type(error).__name__}: {error}")
                return
            stats["free_reads"] += 1

    def make_tokens() -> tuple[bytes, bytes]:
        primary = max(int(n) for n in os.listdir(local) if n.isdigit())
        return (
            Fernet((local / str(primary)).read_bytes()).encrypt(b"before"),
            Fernet((local / "0").read_bytes()).encrypt(b"after"),
        )

    with cycle.lock:
        cycle.tokens = make_tokens()
    reader = threading.Thread(target=free_reader, daemon=True)
    reader.start()
    try:
        for number in range(CYCLES):
            with cycle.lock:
                cycle.tokens = make_tokens()
            with exclusive(config.state_dir, "rotate"):
                run = Run(config, repository, Trigger.CLI, progress=on_progress)
                result = rotate_repository(run)
            assert result.outcome == "ok", f"cycle {number}: {result.messages}"
            assert not failures, failures
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not failures, failures
    assert stats["straddled"] == {"phase 1": CYCLES, "phase 2": CYCLES}
    assert stats["free_reads"] > CYCLES, stats
    print(f"reader stats: {stats}")
