"""Where a running daemon describes itself, so that ``status`` can show it without IPC."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from keysyncd.errors import KeysyncError
from keysyncd.io.local.fsutil import load_json
from keysyncd.io.local.trust import read_trusted


def daemon_file(state_dir: Path) -> Path:
    """Return where the running daemon describes itself (PID, schedule, last job)."""
    return state_dir / "daemon.json"


def read_daemon_info(state_dir: Path) -> dict[str, Any] | None:
    """Return the running daemon's self-description, or None if no daemon is running."""
    try:
        info = load_json(read_trusted(daemon_file(state_dir), limit=1 << 20) or b"null")
        os.kill(int(info["pid"]), 0)
    except (KeysyncError, OSError, ValueError, KeyError, TypeError):
        return None
    return info if isinstance(info, dict) else None
