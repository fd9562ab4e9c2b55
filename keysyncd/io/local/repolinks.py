"""Directories keysyncd takes over, and who owns them. Repository directories as links
resolve them (compared by device and inode too, and held to the rules ``keysyncd.config.paths``
applies as written); the controller's repository directory, never a link and below
directories only root or keysyncd's user may change (whoever may change one could swap it for
a link to any directory ``init`` would chmod and chown). A directory ``init`` would take over
must not hold anything but the repository's own files (key files, ``private.pem`` for JWS,
``.keysyncd-*`` temp files): made 0700, ``/etc`` or a home directory would lock its users out.
Owner and group names are resolved on the controller (SFTP sets numeric ids on nodes)."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from keysyncd.config import Config, RepositoryConfig
from keysyncd.config.paths import directory, overlap, owned_directories
from keysyncd.core.names import is_temp_name, key_index, show_name
from keysyncd.core.text import bounded, printable
from keysyncd.errors import ConfigError, LocalFileError, RepositoryError
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
    """Return, by repository index, the first problem of each repository whose directories, as links
    resolve, are ``/``, in a pseudo file system, or equal to or nested with another's, state_dir or
    report_dir."""
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
    """Return one line per repository whose directories only the disk refuses: as links resolve
    them, or (kinds kept on the controller) a link or below a directory others may change."""
    found = resolved_problems(config)
    for index, repository in enumerate(config.repositories):
        # the keys of a kind with pairs per node are kept in state_dir there (JwsStore)
        if index in found or repository.key_kind.pairs_per_node:
            continue
        if problem := controller_problem(repository.path):
            found[index] = f"At 'repositories[{index}].path': {problem}"
    return [found[index] for index in sorted(found)]


Own = Callable[[str], bool]


def symmetric_file(name: str) -> bool:
    """Return True for a name a fernet or credential repository may hold."""
    return key_index(name) is not None or is_temp_name(name)


def jws_private_file(name: str) -> bool:
    """Return True for a name a JWS private directory may hold."""
    from keysyncd.core.jws import PRIVATE_NAME  # here: the jws model, for jws stores only

    return name == PRIVATE_NAME or is_temp_name(name)


def local_others(path: Path, own: Own) -> list[str]:
    """Return the names in local directory ``path`` that are not ``own`` (sorted, escaped for
    printing); empty if it does not exist. Raise RepositoryError if it cannot be listed."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise RepositoryError(f"cannot list {path}: {describe_os_error(error)}") from None
    return sorted(show_name(name) for name in names if not own(name))


def refusal(where: str, path: Path, others: list[str], action: str = "init") -> str:
    """Return the one line ``action`` refuses with, saying what to do. Example: ``"init: /etc
    already exists and holds other files ('passwd', ...): keysyncd would change its mode and owner;
    point path at a directory of its own"``."""
    return (
        f"{action}: {where}{path} already exists and holds other files "
        f"({bounded(others, 3)}): keysyncd would change its mode and owner; point path at a "
        "directory of its own"
    )


def resolve_id(value: int | str | None, lookup: str) -> int | None:
    """Return a numeric uid/gid for ``value`` (a number or a name); raise ConfigError if unknown."""
    if value is None or isinstance(value, int):
        return value
    try:
        if lookup == "user":
            return pwd.getpwnam(value).pw_uid
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise ConfigError([f"unknown {lookup} {value!r} on this controller"]) from None


def node_owner(repository: RepositoryConfig) -> tuple[int | None, int | None]:
    """Return the numeric (uid, gid) every key file must have on the nodes."""
    return resolve_id(repository.owner, "user"), resolve_id(repository.group, "group")


def local_owner(repository: RepositoryConfig) -> tuple[int | None, int | None]:
    """Return the (uid, gid) for local key files: only applied when running as root."""
    return node_owner(repository) if os.geteuid() == 0 else (None, None)
