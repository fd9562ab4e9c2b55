"""The README's demo command runs the daemon against a real local fleet and stops cleanly."""

from __future__ import annotations

import subprocess
import sys


def test_demo_rotates_and_syncs_a_real_fleet() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "keysyncd.testing.demo", "--every", "2", "--duration", "7"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    out = finished.stdout
    assert "starting 3 OpenSSH nodes on 127.0.0.1" in out
    assert "daemon stopped (exit 0)" in out
    # at least two rotations happened, and every node followed the controller
    blocks = out.split("keys (index:sha256 prefix):")[1:]
    rotated_and_synced = [
        b for b in blocks if " 2:" in b.split("\n")[1] and b.count(" in_sync") == 3
    ]
    assert rotated_and_synced, out[-3000:]
