"""Keystone's view of a key directory: what its loader would load from a listing. Pure, no IO.
Keystone (``FernetUtils._get_key_files``) loads each name ``int()`` takes whose path
``os.path.isfile`` (a symlink to a file too), skips empty files, keys by ``int(name)`` (``1``
and ``01`` collide). keysyncd writes only canonical names; any other such entry is drift.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType

from keysyncd.core.keyring import digest_of
from keysyncd.core.names import (
    CHANGED_WHILE_READ,
    MAX_KEY_FILE,
    canonical_index,
    key_index,
    too_large,
)


class EntryType(StrEnum):
    """What a directory entry is, as lstat (or stat, for a link's target) reports it."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    FIFO = "fifo"
    SOCKET = "socket"
    DEVICE = "device"
    OTHER = "other"
    MISSING = "missing"  # a dangling link's target, or one that could not be examined


def entry_type(mode: int) -> EntryType:
    """Return the EntryType for an ``st_mode`` value (as lstat or stat report it)."""
    checks = (
        (stat.S_ISREG, EntryType.FILE),
        (stat.S_ISDIR, EntryType.DIRECTORY),
        (stat.S_ISLNK, EntryType.SYMLINK),
        (stat.S_ISFIFO, EntryType.FIFO),
        (stat.S_ISSOCK, EntryType.SOCKET),
        (stat.S_ISCHR, EntryType.DEVICE),
        (stat.S_ISBLK, EntryType.DEVICE),
    )
    return next((kind for test, kind in checks if test(mode)), EntryType.OTHER)


@dataclass(frozen=True)
class Entry:
    """One directory entry whose name keystone might load (lstat semantics): ``target`` and
    ``target_size`` describe a symlink's target (stat, never opened); ``digest`` and ``problem``
    (None: a valid key) a regular file that was read. Content itself is never kept."""

    name: str
    type: EntryType
    mode: int = 0o600
    size: int = 0
    uid: int | None = None
    gid: int | None = None
    target: EntryType | None = None
    target_size: int | None = None
    digest: str | None = None
    problem: str | None = None
    mtime: int | None = None  # as listed: a read checks the file it opened is the one listed

    @property
    def index(self) -> int | None:
        """Return the key id keystone gives this entry (None: keystone ignores the name)."""
        return key_index(self.name)

    @property
    def canonical(self) -> bool:
        """Return True if the name is one keysyncd itself would write."""
        return canonical_index(self.name) is not None

    @property
    def loaded(self) -> bool:
        """Return True if keystone's loader would load this entry as a key."""
        if self.index is None:
            return False
        if self.type is EntryType.FILE:
            return self.size > 0
        if self.type is EntryType.SYMLINK:  # os.path.isfile follows the link
            return self.target is EntryType.FILE and (self.target_size or 0) > 0
        return False

    @property
    def valid_key(self) -> bool:
        """Return True for a regular file read and found to hold a valid key."""
        return self.type is EntryType.FILE and self.digest is not None and self.problem is None


def with_content(
    entry: Entry,
    content: bytes | None,
    problem_of: Callable[[bytes], str | None],
    cap: int = MAX_KEY_FILE,
) -> Entry:
    """Return ``entry`` (a regular file) with what reading it found: digest and validity (over
    ``cap``, its kind's read cap: no key); ``content`` None (changed since listed): unjudged."""
    if content is None:
        return replace(entry, problem=CHANGED_WHILE_READ)
    problem = too_large(cap) if len(content) > cap else problem_of(content)
    return replace(entry, size=len(content), digest=digest_of(content), problem=problem)


def unread(entry: Entry, cap: int = MAX_KEY_FILE) -> Entry:
    """Return ``entry`` judged unread: an empty regular file, or one larger than ``cap``, is no key
    (keystone skips the first and chokes on the second)."""
    if entry.type is not EntryType.FILE:
        return entry
    if entry.size == 0:
        return replace(entry, problem="empty file")
    return replace(entry, problem=too_large(cap))


def needs_content(entry: Entry, expected: Collection[int]) -> bool:
    """Return True for an entry whose content must be read to judge it against ``expected``: a
    regular file of a plausible size at an expected canonical name or above the controller's
    primary. Nothing else is opened (a FIFO blocks, a link leads elsewhere, each read lets a
    hostile node stall; other entries are removed whatever they hold)."""
    if entry.type is not EntryType.FILE or not 0 < entry.size <= MAX_KEY_FILE:
        return False
    index = entry.index
    top = max(expected, default=0)
    return index is not None and ((entry.canonical and index in expected) or index > top)


@dataclass(frozen=True)
class KeystoneView:
    """What keystone would load: key id -> its entries (more than one: directory order decides)."""

    loaded: Mapping[int, tuple[Entry, ...]]

    @property
    def ids(self) -> frozenset[int]:
        """Return the key ids keystone would load."""
        return frozenset(self.loaded)


def keystone_view(entries: Iterable[Entry]) -> KeystoneView:
    """Return what keystone's loader would load from ``entries`` (files ``0`` and ``1``, ``099``
    a symlink to a file, ``x``: ids {0, 1, 99})."""
    loaded: dict[int, list[Entry]] = {}
    for entry in entries:
        index = entry.index
        if index is not None and entry.loaded:
            loaded.setdefault(index, []).append(entry)
    return KeystoneView(
        MappingProxyType({index: tuple(found) for index, found in sorted(loaded.items())})
    )


def entry_problem(entry: Entry) -> str | None:
    """Return why ``entry`` is not a canonical key file keysyncd could have written, or None
    (content and mode are judged against what the controller expects, elsewhere)."""
    if not entry.canonical:
        what = "loads" if entry.loaded else "may load"
        return f"non-canonical name keystone {what} as key {entry.index}"
    if entry.type is EntryType.SYMLINK:
        target = entry.target.value if entry.target else "unknown"
        return f"a symlink (to a {target}), not a regular file"
    if entry.type is not EntryType.FILE:
        return f"a {entry.type.value}, not a regular file"
    return None
