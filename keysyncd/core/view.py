"""Keystone's view of a key directory: what its loader would load from a listing. Pure, no IO.

Keystone (``fernet_utils.FernetUtils._get_key_files``) lists the directory and, for every
name, loads the file if ``os.path.isfile(path)`` (so a symlink to a regular file counts) and
``int(name)`` works (signs, zero padding, surrounding whitespace, underscores and non-ASCII
digits included); it skips empty files and keys the result by ``int(name)``. Two names with
the same ``int()`` (``1`` and ``01``) load in directory order, so which one wins is
arbitrary. keysyncd only ever writes canonical names (``str(index)``, index >= 0) as regular
files; every other entry keystone would load is drift.

Listings have lstat semantics: a symlink is reported as a symlink, and what it points to is
recorded separately (``target``), so deciding never requires following a link.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType

from keysyncd.core.keyring import digest_of

TEMP_PREFIX = ".keysyncd-"  # not an integer: keystone never loads a file named like this
# Read caps, one per kind of file keysyncd reads, on the controller and on the nodes: a file
# listed larger than its kind's cap is judged without being opened ("larger than N bytes"),
# and no read asks for more than the cap and one byte (a file that grew after it was listed
# is judged too large, never read whole).
MAX_KEY_FILE = 4096  # a Fernet or credential key: 44 bytes and a newline; more is junk
# A JWS public or private key PEM: the largest keystone makes is an ES512 private key (384
# bytes; its public key 268); 16 KiB also holds an RSA key of 16,384 bits (12.6 KB as
# PKCS#8), should keystone ever sign RS256.
MAX_PEM = 16_384
FILE_MODE = 0o600
CHANGED_WHILE_READ = "changed while it was read"
DIRECTORY_MODE = 0o700


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


def key_index(name: str) -> int | None:
    """Return the key id keystone gives a file called ``name``, or None if it ignores it.

    This is keystone's own rule, ``int(name)``: ``"099"``, ``" 1"``, ``"+2"``, ``"1_0"`` and
    ``"\\u0663"`` (an Arabic-Indic 3) all load as keys.
    """
    try:
        return int(name)
    except ValueError:
        return None


def canonical_index(name: str) -> int | None:
    """Return the index of a canonical key name (``str(index)`` with index >= 0), else None.

    The only names keysyncd writes, and the only ones it accepts in a repository.
    """
    index = key_index(name)
    return index if index is not None and index >= 0 and str(index) == name else None


def is_temp_name(name: str) -> bool:
    """Return True for keysyncd's temp file names (``.keysyncd-*``)."""
    return name.startswith(TEMP_PREFIX)


def show_name(name: str) -> str:
    """Return ``name`` safe to print: quoted and escaped (``'1 '``, ``'\\x1b[2J'``)."""
    return ascii(name)


@dataclass(frozen=True)
class Entry:
    """One directory entry whose name keystone might load (lstat semantics).

    ``target`` and ``target_size`` describe what a symlink points to (from stat, which never
    opens it); ``digest`` and ``problem`` describe the content of a regular file that was read
    (``problem`` is why it is not a valid key, None when it is). Content itself is never kept.
    """

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


def too_large(cap: int) -> str:
    """Return the problem of a file larger than ``cap``, its kind's read cap."""
    return f"larger than {cap} bytes: not a key"


def with_content(
    entry: Entry,
    content: bytes | None,
    problem_of: Callable[[bytes], str | None],
    cap: int = MAX_KEY_FILE,
) -> Entry:
    """Return ``entry`` (a regular file) with what reading it found: digest and validity;
    content over ``cap`` (the read cap of the file's kind) is no key.

    ``content`` None: the file changed between the listing and the read; it is not judged.
    """
    if content is None:
        return replace(entry, problem=CHANGED_WHILE_READ)
    if len(content) > cap:
        problem: str | None = too_large(cap)
    else:
        problem = problem_of(content)
    return replace(entry, size=len(content), digest=digest_of(content), problem=problem)


def unread(entry: Entry, cap: int = MAX_KEY_FILE) -> Entry:
    """Return ``entry`` judged without reading it: an empty regular file, or one larger than
    ``cap`` (its kind's read cap), is no key (keystone skips the first and chokes on the
    second)."""
    if entry.type is not EntryType.FILE:
        return entry
    if entry.size == 0:
        return replace(entry, problem="empty file")
    return replace(entry, problem=too_large(cap))


def needs_content(entry: Entry, expected: Collection[int]) -> bool:
    """Return True for an entry whose content must be read to judge it against ``expected``
    (the controller's indices): a regular file of a plausible size at an expected canonical
    name, or at any name above the controller's primary (it may be someone's newer key).

    Nothing else is ever opened: a FIFO would block, a link leads elsewhere, and every other
    entry is removed whatever it holds (each read is a chance for a hostile node to stall).
    """
    if entry.type is not EntryType.FILE or not 0 < entry.size <= MAX_KEY_FILE:
        return False
    index = entry.index
    top = max(expected, default=0)
    return index is not None and ((entry.canonical and index in expected) or index > top)


@dataclass(frozen=True)
class KeystoneView:
    """What keystone would load: key id -> the entries it may load for that id.

    More than one entry for an id means keystone's choice depends on directory order.
    """

    loaded: Mapping[int, tuple[Entry, ...]]

    @property
    def ids(self) -> frozenset[int]:
        """Return the key ids keystone would load."""
        return frozenset(self.loaded)


def keystone_view(entries: Iterable[Entry]) -> KeystoneView:
    """Return what keystone's loader would load from a directory holding ``entries``.

    Example: entries ``0`` (file), ``1`` (file), ``099`` (symlink to a file) and ``x`` give
    ids {0, 1, 99}.
    """
    loaded: dict[int, list[Entry]] = {}
    for entry in entries:
        index = entry.index
        if index is not None and entry.loaded:
            loaded.setdefault(index, []).append(entry)
    return KeystoneView(
        MappingProxyType({index: tuple(found) for index, found in sorted(loaded.items())})
    )


def entry_problem(entry: Entry) -> str | None:
    """Return why ``entry`` is not a canonical key file keysyncd could have written, or None.

    Content and mode are judged elsewhere (against what the controller expects).
    """
    if not entry.canonical:
        what = "loads" if entry.loaded else "may load"
        return f"non-canonical name keystone {what} as key {entry.index}"
    if entry.type is EntryType.SYMLINK:
        target = entry.target.value if entry.target else "unknown"
        return f"a symlink (to a {target}), not a regular file"
    if entry.type is not EntryType.FILE:
        return f"a {entry.type.value}, not a regular file"
    return None
