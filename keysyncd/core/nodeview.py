"""What a node holds, as keysyncd reads it (``NodeView``), and the owner its key files must
have (``Ownership``): the values ``keysyncd.core.nodeplan`` diffs. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from keysyncd.core.access import PathInfo, User
from keysyncd.core.view import Entry, EntryType, KeystoneView, keystone_view


@dataclass(frozen=True)
class NodeView:
    """What a node holds: its directory's mode, every entry at a key name, our temp files,
    the directory's attributes (path, owner) when the node reported them, and those of the
    directories above it, from ``/`` down (read only when an owner is configured)."""

    directory_mode: int
    entries: tuple[Entry, ...]
    temp_files: tuple[str, ...] = ()
    directory: PathInfo | None = None
    ancestors: tuple[PathInfo, ...] = ()

    @property
    def keystone(self) -> KeystoneView:
        """Return what keystone's loader would load from this directory."""
        return keystone_view(self.entries)

    def canonical_files(self) -> dict[int, Entry]:
        """Return index -> entry for canonical names that hold regular files that were read."""
        return {
            index: entry
            for entry in self.entries
            if (index := entry.index) is not None
            and entry.canonical
            and entry.type is EntryType.FILE
            and entry.digest is not None
        }

    def summary(self) -> dict[str, str]:
        """Return the digests of canonical key files by index as text, as reports show them."""
        return {str(i): e.digest or "" for i, e in sorted(self.canonical_files().items())}


@dataclass(frozen=True)
class Ownership:
    """The owner every key file must have on a node (None: whatever the SFTP user makes)."""

    uid: int | None = None
    gid: int | None = None
    name: str | None = None  # as configured, for messages

    @property
    def user(self) -> User | None:
        """Return the user keystone runs as (None: no owner configured, nothing to check)."""
        return None if self.uid is None else User(self.uid, self.gid, self.name)

    def matches(self, entry: Entry) -> bool:
        """Return True if ``entry`` has the required owner and group."""
        return (self.uid is None or entry.uid == self.uid) and (
            self.gid is None or entry.gid == self.gid
        )
