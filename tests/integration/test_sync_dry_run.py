"""``sync --dry-run`` of a Fernet or credential repository, against a real fleet: it leaves the
controller (keys, journal, reports) and every node byte-identical, it completes while another
process holds the lock, and a real action is never blocked by a dry run in progress.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet

Tree = dict[str, tuple[int, bytes | str]]
HOLD_LOCK = (
    "import sys; from pathlib import Path; from keysyncd.io.local.lock import exclusive\n"
    "with exclusive(Path(sys.argv[1]), 'rotate'):\n"
    "    print('held', flush=True); sys.stdin.read()\n"
)


def tree(root: Path) -> Tree:
    """Return every entry under ``root``: its mode and content (a symlink: its target)."""
    found: Tree = {}
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(directory) / name
            info = path.lstat()
            if path.is_symlink():
                found[str(path.relative_to(root))] = (info.st_mode, os.readlink(path))
            elif path.is_file():
                found[str(path.relative_to(root))] = (info.st_mode, path.read_bytes())
            else:
                found[str(path.relative_to(root))] = (info.st_mode, b"")
    return found


def everything(fleet: Fleet, root: Path) -> dict[str, Tree]:
    """Return the controller's keys, journal and reports, and every node's tree."""
    trees = {name: tree(root / name) for name in ("keys", "state", "reports")}
    trees["state"].pop("lock", None)  # rewritten by every lock holder, never read as data
    return trees | {node.name: tree(node.directory) for node in fleet.nodes}


@pytest.fixture(params=["fernet", "credential"])
def lagging(request: pytest.FixtureRequest, fleet: Fleet, tmp_path: Path) -> Iterator[Path]:
    """Return a config whose repository was initialised and rotated while node3 was down,
    so a sync has work to do on node3 (and node2 misses its staged key)."""
    config = fleet_config(fleet, tmp_path / "ctl", repository={"kind": request.param})
    assert main(["-c", str(config), "init"]) == 0
    fleet.stop_node("node3")
    try:
        assert main(["-c", str(config), "rotate", "--force"]) == 1  # node3 is down
    finally:
        fleet.start_node("node3")
    (fleet.node("node2").directory / "0").unlink()
    yield config


def dry_run(config: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "keysyncd", "-c", str(config), "sync", "--dry-run"],
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_a_dry_run_changes_nothing_anywhere(lagging: Path, fleet: Fleet) -> None:
    root = lagging.parent
    before = everything(fleet, root)
    done = dry_run(lagging)
    assert b"node3" in done.stdout, done  # it did look: node3 would get the new keys
    assert everything(fleet, root) == before


def test_a_dry_run_completes_while_another_process_holds_the_lock(
    lagging: Path, fleet: Fleet
) -> None:
    root = lagging.parent
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(root / "state")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        before = everything(fleet, root)
        done = dry_run(lagging)
        assert b"holds the lock" not in done.stderr, done
        assert b"node3" in done.stdout, done
        assert everything(fleet, root) == before
        # a real sync is refused meanwhile: the lock really is held
        assert main(["-c", str(lagging), "sync"]) == 1
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def connected_to(port: int) -> bool:
    """Return True if some local socket has an established connection to ``port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    return True
    return False


def test_a_real_action_is_not_blocked_by_a_dry_run_in_progress(lagging: Path, fleet: Fleet) -> None:
    """node3's sshd is frozen (SIGSTOP): the dry run's connection to it waits for a banner
    that does not come, so the dry run is certainly in progress while the real sync runs."""
    frozen = fleet.node("node3")
    assert frozen.pid is not None
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        running = subprocess.Popen(
            [sys.executable, "-m", "keysyncd", "-c", str(lagging), "sync", "--dry-run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60  # a failure bound only
        while not connected_to(frozen.port):
            assert running.poll() is None, "the dry run ended before reaching node3"
            assert time.monotonic() < deadline, "the dry run never connected to node3"
            time.sleep(0.05)
        assert main(["-c", str(lagging), "sync", "--node", "node2"]) == 0  # --wait 0
        assert running.poll() is None  # the real sync ran while the dry run was in progress
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    running.wait(timeout=60)
