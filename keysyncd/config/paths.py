"""Repository directories that cannot collide or damage the system. Pure: paths as written.
keysyncd deletes files in each directory a repository owns, so each must be absolute,
normalised, not ``/`` nor in a pseudo file system, and apart from every other repository's,
``state_dir`` and ``report_dir``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from keysyncd.config.checks import Reader
from keysyncd.config.model import RepositoryConfig

PSEUDO = ("/proc", "/sys", "/dev", "/run", "/var/run")  # /var/run: a link to /run


def directory(value: Any) -> str | None:
    """Return why ``value`` cannot be a repository directory (None: it can)."""
    if not isinstance(value, str) or not value.startswith("/"):
        return f"must be an absolute path, got {value!r}"
    if value != os.path.normpath(value) or value.startswith("//"):
        return (
            f"must be a normalised path (no '..', '.', '//' or trailing '/'), got {value!r}: "
            f"write {os.path.normpath(value)!r} if that is what is meant"
        )
    if value == "/":
        return "must not be '/': give the repository a directory of its own"
    for pseudo in PSEUDO:
        if _within(PurePosixPath(value), PurePosixPath(pseudo)):
            return f"{value} is inside {pseudo}, a pseudo file system: keys cannot live there"
    return None


def _within(path: PurePosixPath, other: PurePosixPath) -> bool:
    """Return True if ``path`` is ``other`` or inside it."""
    return path == other or other in path.parents


def overlap(first: PurePosixPath, second: PurePosixPath) -> bool:
    """Return True if ``first`` and ``second`` are equal or one is inside the other."""
    return _within(first, second) or _within(second, first)


def owned_directories(repository: RepositoryConfig, index: int) -> list[tuple[str, PurePosixPath]]:
    """Return (config path, directory) of each directory ``repository`` owns on the
    controller and on every node without a ``path`` of its own."""
    where = f"repositories[{index}]"
    if not repository.key_kind.pairs_per_node:
        owned = [(f"{where}.path", repository.path)]
    else:
        private, public = repository.jws_directories()
        owned = [
            (f"{where}.private_path" if repository.private_path else f"{where}.path", private),
            (f"{where}.public_path" if repository.public_path else f"{where}.path", public),
        ]
    # a directory already refused (its value replaced by the default) is not compared
    return [(field, PurePosixPath(path)) for field, path in owned if not directory(str(path))]


def check_disjoint(
    reader: Reader, repositories: Sequence[RepositoryConfig | None], state_dir: str, report_dir: str
) -> None:
    """Report every repository directory equal to or nested with another's, ``state_dir`` or
    ``report_dir``, once per repository; on nodes too (a node's own ``path``: one repository)."""
    seen: list[tuple[str, PurePosixPath]] = [
        ("state_dir", PurePosixPath(os.path.normpath(state_dir))),
        ("report_dir", PurePosixPath(os.path.normpath(report_dir))),
    ]
    for index, repository in enumerate(repositories):
        if repository is None:
            continue
        owned = owned_directories(repository, index)
        reported = False
        for where, path in owned:
            clash = next(((w, p) for w, p in seen if overlap(path, p)), None)
            if clash is not None and not reported:
                reported = True  # one line per repository: the first clash says enough
                relation = "is" if path == clash[1] else "is nested with"
                reader.fail(
                    where,
                    f"{path} {relation} {clash[1]} ('{clash[0]}'): every repository needs a "
                    "directory of its own, apart from every other one and from state_dir "
                    "and report_dir, or one would delete or rotate the other's files",
                )
        seen += [(where, path) for where, path in owned]
