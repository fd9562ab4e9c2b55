"""The daemon's periodic check never pushes while the controller's own repository has a
problem: the real daemon, a real fleet, a node that drifted meanwhile (a check that pushed
would repair it), and every node's whole tree compared byte for byte.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from keysyncd.testing.fleet import Fleet
from tests.e2e.controller import Controller

Tree = dict[str, tuple[int, bytes]]


def tree(root: Path) -> Tree:
    """Return every entry under ``root`` with its mode and content (b"" for a directory)."""
    found: Tree = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
            found[str(path.relative_to(root))] = (path.lstat().st_mode, content)
    return found


def nodes_of(fleet: Fleet) -> dict[str, Tree]:
    return {node.name: tree(node.directory) for node in fleet.nodes}


def test_the_periodic_check_never_pushes_while_a_local_key_is_readable_by_others(
    controller: Controller,
) -> None:
    def invalid_checks() -> list[dict[str, Any]]:
        return [
            r
            for r in controller.reports()
            if r["action"] == "drift" and r["outcome"] == "failed" and r["trigger"] == "cron"
        ]

    (controller.keys / "0").chmod(0o644)  # lax permissions: an invalid local repository
    controller.wait(invalid_checks, "a periodic check to find the repository invalid")
    victim = controller.fleet.node("node2").directory
    (victim / "0").unlink()  # drift that a periodic check with repair would push over
    before = nodes_of(controller.fleet)
    seen = len(invalid_checks())
    # two more periodic checks: the first of them began after the drift, and has ended
    controller.wait(lambda: len(invalid_checks()) >= seen + 2, "two more periodic checks")
    assert nodes_of(controller.fleet) == before
    (controller.keys / "0").chmod(0o600)  # fixed: the same check now repairs node2
    controller.wait(lambda: (victim / "0").exists(), "node2 to be repaired once fixed")
