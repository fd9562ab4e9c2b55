"""A kill -9 of keysyncd after the rotation is journaled but before its after_rotate hook
starts (with nodes, the whole push of the new keys lies there) leaves the migration pending:
the block is journaled in the same write as the rotation (SPEC rule 12)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from keysyncd.commands.cli import main
from keysyncd.io.local.state import load_state

CRASH = """
import os, sys
import keysyncd.actions.afterrotate as afterrotate
def killed(*args, **kwargs):
    os._exit(137)  # as kill -9 right before the block is journaled
afterrotate.run_after_rotate = killed
from keysyncd.commands.cli import main
sys.exit(main(["-c", sys.argv[1], "rotate"]))
"""


def test_a_kill_before_after_rotate_starts_leaves_the_migration_pending(tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/state\n"
        "repositories:\n"
        "  - name: cred\n"
        "    kind: credential\n"
        f"    path: {tmp_path}/keys\n"
        "    hooks:\n"
        "      after_rotate:\n"
        f"        - ['sh', '-c', 'echo ran >> {log}']\n"
    )
    config.chmod(0o600)
    assert main(["-c", str(config), "init"]) == 0
    crashed = subprocess.run([sys.executable, "-c", CRASH, str(config)], timeout=60, check=False)
    assert crashed.returncode == 137
    state = load_state(tmp_path / "state", "cred")
    assert not log.exists(), "the after_rotate hook never ran"
    assert state.generation == 2, "the rotation itself was journaled"
    assert state.hook_block is not None, "rotation journaled as done with no pending block"
    assert state.hook_block.problem.startswith("has not run yet")
    assert main(["-c", str(config), "rotate"]) == 0  # the pending hook runs, then a rotation
    assert log.read_text().splitlines() == ["ran", "ran"]
    assert load_state(tmp_path / "state", "cred").hook_block is None
