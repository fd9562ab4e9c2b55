"""Local file primitives: atomic writes (exclusive temp file + fsync + rename + directory
fsync), and safe reads (never through a symlink, never blocking on a FIFO, capped)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keysyncd.core.names import MAX_KEY_FILE, TEMP_PREFIX

CLOCK_PROBE_PREFIX = f"{TEMP_PREFIX}clock-"  # the temp files a node's clock is read from


def temp_name() -> str:
    """Return a fresh temp file name that keystone ignores (not an integer)."""
    # os.urandom(n).hex() is secrets.token_hex(n), without importing secrets and random
    return f"{TEMP_PREFIX}{os.urandom(8).hex()}.tmp"


def clock_probe_name() -> str:
    """Return a fresh name for the empty temp file a node's clock is read from."""
    return f"{CLOCK_PROBE_PREFIX}{os.urandom(8).hex()}.tmp"


def fsync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries to disk so renames survive a power cut."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_temp(directory: Path, content: bytes, mode: int = 0o600) -> Path:
    """Return a new fsynced temp file in ``directory`` holding ``content``, created exclusively with
    ``mode`` (no other user can ever read it); raise OSError, the partial file removed."""
    path = directory / temp_name()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(descriptor, mode)  # exactly ``mode``, whatever the umask took away
        view = memoryview(content)
        while view:
            written = os.write(descriptor, view)
            view = view[written:]
        os.fsync(descriptor)
    except BaseException:
        os.close(descriptor)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(descriptor)
    return path


def atomic_write(path: Path, content: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``content`` atomically; raise OSError on failure (nothing changed)."""
    temp = write_temp(path.parent, content, mode)
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_directory(path.parent)


def describe_os_error(error: OSError) -> str:
    """Return a one-line, secret-free description of ``error`` (``disk full``, ...)."""
    names = {
        errno.ENOSPC: "disk full",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
        errno.ENOENT: "no such file or directory",
    }
    return names.get(error.errno or 0, error.strerror or type(error).__name__)


def remove_temp_files(directory: Path) -> list[str]:
    """Delete leftover ``.keysyncd-*`` temp files in ``directory``; return their names. Call it only
    while holding the lock that serialises writes to ``directory``."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            if name.startswith(TEMP_PREFIX):
                with contextlib.suppress(OSError):
                    (directory / name).unlink()
                    removed.append(name)
    return removed


def load_json(content: bytes) -> Any:
    """Return the JSON document in ``content``; raise ValueError if it is not JSON, or nests
    so deep that parsing it would exhaust the stack (a hostile file must not crash us)."""
    try:
        return json.loads(content)
    except RecursionError:
        raise ValueError("nested too deeply to be a keysyncd file") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text: {error.reason}") from None


def read_key_file(
    path: Path,
    cap: int = MAX_KEY_FILE,
    problem: Callable[[os.stat_result], str | None] = lambda info: None,
) -> bytes:
    """Return up to ``cap`` + 1 bytes of regular file ``path`` (never through a link, never
    blocking); raise OSError if unreadable, ValueError if not regular or ``problem`` says so."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if found := problem(info):
            raise ValueError(f"unsafe: {found}")
        return handle.read(cap + 1)
