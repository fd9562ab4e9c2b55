"""Repository directories as links resolve them, and the controller's repository directory,
which keysyncd never reaches through a link.

Every repository directory is also resolved (and compared by device and inode) and held to
the rules ``keysyncd.config.paths`` applies as written. The controller's directory must not
be a link, below directories only root or keysyncd's user may change: whoever may change
one could swap it for a link to any directory ``init`` would chmod and chown."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from keysyncd.config import Config
from keysyncd.config.paths import directory, overlap, owned_directories
from keysyncd.core.text import printable
from keysyncd.errors import LocalFileError
from keysyncd.io.local.fsutil import describe_os_error
from keysyncd.io.local.trust import parent_problem

OWN = (
    "every repository needs a directory of its own, apart from every other one and from "
    "state_dir and report_dir, or one would delete or rotate the other's files"
)


def controller_problem(path: Path) -> str | None:
    """Return why the controller cannot use repository directory ``path`` safely, or None. Example:
    ``"repository /etc/keystone/fernet-keys is a symlink (to '/srv'): ..."``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None  # init creates it (mkdir never follows a link)
    except OSError as error:
        return f"repository {path}: {describe_os_error(error)}"
    if info is not None and stat.S_ISLNK(info.st_mode):
        try:
            target = printable(repr(os.readlink(path)))
        except OSError:
            target = "?"
        return (
            f"repository {path} is a symlink (to {target}); keysyncd does not follow it: "
            "point path at the directory itself"
        )
    if problem := parent_problem(path):
        return (
            f"repository {path} is unsafe: {problem}; whoever may change it could swap the "
            "repository for a link: make it owned by root (or by the user keysyncd runs as) "
            "and writable by no one else"
        )
    return None


def check_controller_directory(path: Path) -> None:
    """Raise LocalFileError (one line, what to do) if ``controller_problem(path)``."""
    if problem := controller_problem(path):
        raise LocalFileError(problem)


@dataclass(frozen=True)
class Resolved:
    """A directory as configured (``where``, ``written``) and as links resolve it."""

    where: str
    written: str
    path: PurePosixPath
    identity: tuple[int, int] | None  # (st_dev, st_ino) of an existing directory


def resolve(where: str, written: Path | str) -> Resolved:
    """Return ``written`` resolved: its real path and, if it exists, its device and inode."""
    real = os.path.realpath(written)
    try:
        info = os.stat(real)
        identity: tuple[int, int] | None = (info.st_dev, info.st_ino)
    except OSError:
        identity = None
    return Resolved(where, str(written), PurePosixPath(real), identity)


def _clash(directory_: Resolved, other: Resolved) -> str | None:
    same = directory_.identity is not None and directory_.identity == other.identity
    if same or directory_.path == other.path:
        return "is"
    return "is nested with" if overlap(directory_.path, other.path) else None


def _problem(directory_: Resolved, seen: list[Resolved]) -> str | None:
    """Return the line refusing ``directory_`` as resolved, or None."""
    head = f"At '{directory_.where}': {directory_.written} resolves to {directory_.path}"
    if problem := directory(str(directory_.path)):
        return f"{head}: {problem}"
    for other in seen:
        if relation := _clash(directory_, other):
            return f"{head}, which {relation} {other.path} ('{other.where}'): {OWN}"
    return None


def resolved_problems(config: Config) -> dict[int, str]:
    """Return, by repository index, the line refusing each repository whose directories, as
    links resolve, are ``/`` or in a pseudo file system, or equal to or nested with another
    repository's directory, with ``state_dir`` or with ``report_dir`` (the first problem of
    each: one line says enough)."""
    seen = [resolve("state_dir", config.state_dir), resolve("report_dir", config.report_dir)]
    found: dict[int, str] = {}
    for index, repository in enumerate(config.repositories):
        for where, written in owned_directories(repository, index):
            resolved = resolve(where, str(written))
            if index not in found and (line := _problem(resolved, seen)):
                found[index] = line
            seen.append(resolved)
    return found


def repository_problems(config: Config) -> list[str]:
    """Return every problem of ``config``'s repository directories that only the disk shows,
    one line per repository: as links resolve them, or (kinds kept on the controller) the
    directory itself a link or below a directory that someone else may change."""
    found = resolved_problems(config)
    for index, repository in enumerate(config.repositories):
        # the keys of a kind with pairs per node are kept in state_dir there (JwsStore)
        if index in found or repository.key_kind.pairs_per_node:
            continue
        if problem := controller_problem(repository.path):
            found[index] = f"At 'repositories[{index}].path': {problem}"
    return [found[index] for index in sorted(found)]
