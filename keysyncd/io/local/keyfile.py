"""One key file of the controller's repository, read safely: never through a symlink, never
blocking on a FIFO, never more than the read cap, and checked by its kind."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from keysyncd.core.keyring import Key
from keysyncd.core.kinds import KeyKind
from keysyncd.core.view import MAX_KEY_FILE, canonical_index, too_large
from keysyncd.io.local.fsutil import describe_os_error


def read_key_file(
    path: Path,
    cap: int = MAX_KEY_FILE,
    problem: Callable[[os.stat_result], str | None] = lambda info: None,
) -> bytes:
    """Return up to ``cap`` + 1 bytes of regular file ``path``, never through a symlink and never
    blocking on a FIFO (O_NOFOLLOW, O_NONBLOCK; the file is checked once open). Raise OSError if
    it cannot be read, ValueError if it is not a regular file or ``problem`` finds one in it."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if found := problem(info):
            raise ValueError(f"unsafe: {found}")
        return handle.read(cap + 1)


def read_key(path: Path, index: int, kind: KeyKind) -> tuple[Key | None, str | None]:
    """Return the key at ``path`` (a name keystone loads as key ``index``), or None and
    what is wrong with it (a non-canonical name, not a regular file, unreadable, too
    large, not a key of ``kind``)."""
    if canonical_index(path.name) is None:
        return None, f"non-canonical key name keystone loads as key {index}"
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None, "not a regular file"
        content = read_key_file(path)
    except ValueError as error:
        return None, str(error)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return None, "not a regular file"
        return None, f"cannot read: {describe_os_error(error)}"
    if len(content) > MAX_KEY_FILE:  # read_key_file stopped there: never read whole
        return None, too_large(MAX_KEY_FILE)
    problem = kind.problem(content)
    return (None, problem) if problem else (Key(index, content), None)
