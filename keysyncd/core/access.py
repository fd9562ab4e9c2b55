"""Whether the configured owner (keystone) can reach its keys on a node, from the uid, gid and
mode the node reports. Pure. One POSIX class of bits applies per path; supplementary groups
are unknown, so a verdict errs towards "cannot" (reported, never a change that takes access
away). Directories above a repository are never changed, only reported.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass

READ, WRITE, EXECUTE = 0o4, 0o2, 0o1
UNSAFE_BITS = 0o027  # group write, and anything for others
KEEPER_BITS = 0o700  # the directory's own user (keysyncd, or root) reads, writes and enters
# after an ancestor_problem in a report: what keysyncd did, and who must act
UNREACHABLE_ADVICE = (
    "; keysyncd never changes a directory above the key directory: let the owner pass "
    "through it on the node"
)


@dataclass(frozen=True)
class User:
    """The configured owner of a repository, as ids (``name`` only for messages)."""

    uid: int
    gid: int | None = None
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.name} (uid {self.uid})" if self.name else f"uid {self.uid}"


@dataclass(frozen=True)
class PathInfo:
    """A path's attributes as the node reports them (lstat; stat for a directory above a
    repository, as keystone's path lookup follows links): None for what it left out."""

    path: str
    mode: int
    uid: int | None = None
    gid: int | None = None

    def __str__(self) -> str:
        return f"{self.path} ({_id(self.uid)}:{_id(self.gid)} {stat.S_IMODE(self.mode):04o})"


def _id(value: int | None) -> str:
    return "?" if value is None else str(value)


def permits(user: User, info: PathInfo, wanted: int) -> bool:
    """Return True if ``user`` has every bit of ``wanted`` (READ|WRITE|EXECUTE) on ``info``: uid
    998 (gid 998) may READ|EXECUTE ``0:998 0750``, and nothing on ``998:0 0070`` (owner bits)."""
    if user.uid == 0:
        return True
    mode = stat.S_IMODE(info.mode)
    if info.uid == user.uid:
        bits = mode >> 6
    elif info.gid is not None and info.gid == user.gid:
        bits = mode >> 3
    else:
        bits = mode
    return bits & wanted == wanted


def access_problem(
    user: User | None, directories: Iterable[tuple[PathInfo, int]], files: Iterable[PathInfo]
) -> str | None:
    """Return why ``user`` cannot reach its keys (``"keystone (uid 998) cannot enter
    /etc/keystone/fernet-keys (0:0 0700)"``), or None when it can or no owner is configured
    (nothing says who keystone runs as). ``directories``: (path, wanted) from the top down
    (EXECUTE to pass, READ too to list); ``files``: the key files keystone opens."""
    if user is None:
        return None
    for directory, wanted in directories:
        if not permits(user, directory, wanted):
            verb = "list" if wanted & READ else "enter"
            return f"{user} cannot {verb} {directory}"
    for key in files:
        if not permits(user, key, READ):
            return f"{user} cannot read {key}"
    return None


def ancestors(path: str) -> tuple[str, ...]:
    """Return every directory above the absolute ``path``, from ``/`` down (``/etc/keystone/x`` ->
    ``("/", "/etc", "/etc/keystone")``); () for ``/`` or a relative path."""
    names = [part for part in posixpath.normpath(path).split("/") if part]
    if not path.startswith("/") or not names:
        return ()
    parts = names[:-1]
    return ("/", *("/" + "/".join(parts[: depth + 1]) for depth in range(len(parts))))


def ancestor_problem(user: User | None, found: Iterable[PathInfo]) -> str | None:
    """Return why ``user`` cannot pass (EXECUTE) a directory above its keys (``found``, top down),
    or None; keysyncd never changes these (not its own: a change could take others' access)."""
    return access_problem(user, [(info, EXECUTE) for info in found], ())


def safe_directory(mode: int) -> bool:
    """Return True for a repository directory mode keysyncd accepts as it is: nothing for
    others, no group write, and rwx for its own user (``0700``, ``0750``, ``0710``)."""
    mode = stat.S_IMODE(mode)
    return mode & UNSAFE_BITS == 0 and mode & KEEPER_BITS == KEEPER_BITS


def directory_problem(info: PathInfo, user: User | None, wanted: int) -> str | None:
    """Return why keysyncd must set a directory it owns to 0700 and the owner (``"mode"``, or the
    access problem), or None: a safe one the owner can ``wanted`` is never touched."""
    reached = access_problem(user, [(info, wanted)], ())
    if reached is not None:
        return reached
    return None if safe_directory(info.mode) else "mode"
