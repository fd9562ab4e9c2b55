"""Local files keysyncd trusts, checked as OpenSSH's StrictModes checks its own: owned by the
running user or root, writable by no one else (an identity file readable by no one else),
and so every directory on the way; otherwise someone else could plant a link keysyncd writes
through. Files are opened ``O_NOFOLLOW`` and ``O_NONBLOCK`` and checked with fstat, so what
is checked is what is read."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from keysyncd.errors import LocalFileError
from keysyncd.io.local.fsutil import describe_os_error

GROUP_OTHER_WRITE = 0o022
GROUP_OTHER_ANY = 0o077


def _owner_problem(info: os.stat_result) -> str | None:
    if info.st_uid not in (0, os.geteuid()):
        return f"owned by uid {info.st_uid}, not by root or the user keysyncd runs as"
    return None


def problem_of(info: os.stat_result, directory: bool = False, secret: bool = False) -> str | None:
    """Return why a file (or ``directory``) with status ``info`` cannot be trusted, or None."""
    expected = stat.S_ISDIR if directory else stat.S_ISREG
    if not expected(info.st_mode):
        return "not a directory" if directory else "not a regular file"
    mode = stat.S_IMODE(info.st_mode)
    if secret and mode & GROUP_OTHER_ANY:
        return f"readable or writable by group or others (mode {mode:04o}); chmod 600 it"
    if mode & GROUP_OTHER_WRITE:
        return f"writable by group or others (mode {mode:04o})"
    return _owner_problem(info)


def check_directory(path: Path, what: str) -> None:
    """Raise LocalFileError if directory ``path`` exists and cannot be trusted, or if a directory on
    the way to it (as written and as links resolve) could be changed by someone else, who could swap
    ``path`` for a link: one others may write is accepted only sticky (``/tmp``). A missing
    directory is fine: keysyncd creates it 0700."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as error:
        raise LocalFileError(f"{what} {path}: {describe_os_error(error)}") from None
    if info is not None and (problem := problem_of(info, directory=True)):
        raise LocalFileError(f"{what} {path} is unsafe: {problem}")
    if problem := parent_problem(path):
        raise LocalFileError(f"{what} {path} is unsafe: {problem}")


def _ancestors(path: Path) -> list[Path]:
    """Return every directory above ``path``: as written, as its links resolve, and every
    directory a link on the way (or a link a link points to) is looked up in."""
    written = Path(os.path.abspath(path))
    resolved = Path(os.path.realpath(path))
    seen: list[Path] = []
    for parent in [*written.parents, *resolved.parents, *_looked_up_in(written)]:
        if parent not in seen:
            seen.append(parent)
    return seen


def _looked_up_in(path: Path, hops: int = 40) -> list[Path]:
    """Return every directory a name is looked up in while ``path`` resolves, link by link (at most
    ``hops``, the kernel's limit): whoever may write one may swap that name."""
    directories: list[Path] = []
    pending = list(path.parts[1:])
    current = Path("/")
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = current.parent
            continue
        directories.append(current)
        try:
            target = os.readlink(current / name)
        except OSError:  # not a link, or not there: the walk goes on as written
            current = current / name
            continue
        hops -= 1
        if hops < 0:
            break
        if os.path.isabs(target):
            current = Path("/")
        pending = [*Path(target).parts[1 if os.path.isabs(target) else 0 :], *pending]
    return directories


def trust_problems(path: Path) -> list[str]:
    """Return why file ``path`` cannot be trusted: itself (as its links resolve) and each directory
    on the way to it someone else could change; empty when it can be. Example: ``["/etc/keysyncd is
    writable by group or others (mode 0777) and not sticky"]``."""
    try:
        info = os.stat(path)
    except OSError as error:
        return [describe_os_error(error)]
    found = [problem] if (problem := problem_of(info)) else []
    return found + [
        f"{p} is {problem}" for p in _ancestors(path) if (problem := _parent_problem(p))
    ]


def parent_problem(path: Path) -> str | None:
    """Return why a directory on the way to ``path`` (as written and as its links resolve) could be
    changed by someone else, or None: whoever may change one may swap ``path``. Example:
    ``"/etc/keystone is owned by uid 163, not by root or the user keysyncd runs as"``."""
    for parent in _ancestors(path):
        if problem := _parent_problem(parent):
            return f"{parent} is {problem}"
    return None


def _parent_problem(directory: Path) -> str | None:
    try:
        info = os.stat(directory)
    except OSError:
        return None  # not there (yet): nothing there can be swapped
    if not stat.S_ISDIR(info.st_mode):
        return None
    if owner := _owner_problem(info):
        return owner
    mode = stat.S_IMODE(info.st_mode)
    if mode & GROUP_OTHER_WRITE and not mode & stat.S_ISVTX:
        return f"writable by group or others (mode {mode:04o}) and not sticky"
    return None


def open_trusted(path: Path, flags: int, follow: bool = False, secret: bool = False) -> int:
    """Return a descriptor for ``path``, checked trusted once open (``flags``: os.open's; O_CREAT
    makes it 0600; a link refused unless ``follow``; a FIFO never blocks); raise FileNotFoundError
    if missing, LocalFileError if unsafe or unopenable."""
    extra = os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        descriptor = os.open(path, flags | extra, 0o600)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno == errno.ELOOP and not follow:  # what O_NOFOLLOW says of a symlink
            raise LocalFileError(f"{path} is a symlink; keysyncd does not follow it") from None
        raise LocalFileError(f"cannot open {path}: {describe_os_error(error)}") from None
    try:
        info = os.fstat(descriptor)
        problem = problem_of(info, secret=secret)
        if not problem and flags & (os.O_WRONLY | os.O_RDWR) and info.st_nlink != 1:
            # a hard link shares the file with another name: writing it (truncating a lock)
            # would change that other file too
            problem = f"it has {info.st_nlink} hard links"
        if problem:
            raise LocalFileError(f"{path} is unsafe: {problem}")
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def read_trusted(
    path: Path, limit: int = 64 << 20, follow: bool = False, secret: bool = False
) -> bytes | None:
    """Return the content of trusted file ``path`` (None if it does not exist). Raise LocalFileError
    if it is unsafe, unreadable or larger than ``limit`` bytes."""
    try:
        descriptor = open_trusted(path, os.O_RDONLY, follow=follow, secret=secret)
    except FileNotFoundError:
        return None
    try:
        with os.fdopen(descriptor, "rb") as handle:
            content = handle.read(limit + 1)
    except OSError as error:
        raise LocalFileError(f"cannot read {path}: {describe_os_error(error)}") from None
    if len(content) > limit:
        raise LocalFileError(f"{path} is larger than {limit} bytes: not a keysyncd file")
    return content
