"""Everything below a directory with its type, mode, owner and content digest (or link
target): what the hostile-controller and self-trust tests compare before and after a command."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def tree(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Return type, mode, owner and content digest (or link target) of everything below root."""
    found = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(base) / name
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                what = os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""
            found[str(path)] = (stat.S_IFMT(info.st_mode), info.st_mode & 0o7777, info.st_uid,
                                what)  # fmt: skip
    return found
