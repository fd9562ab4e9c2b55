"""What a node needs, as a value: ``diff(expected, view: NodeView) -> NodePlan``. Pure, no IO.
In sync: every entry keystone would load is an expected key as a canonical 0600 file (and
the owner's), nothing else at a key name. Phase 1 adds, highest first; phase 2 replaces
(``0`` last), then removes (safety rule 3). A wrong file is replaced by rename, never
chmod-ed or chown-ed: a symlink at a key name must never lead a change outside.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from keysyncd.core.access import (
    EXECUTE,
    READ,
    PathInfo,
    User,
    access_problem,
    ancestor_problem,
    directory_problem,
)
from keysyncd.core.names import CHANGED_WHILE_READ, FILE_MODE, show_name
from keysyncd.core.view import Entry, EntryType, KeystoneView, entry_problem, keystone_view

MAX_LISTED = 20  # odd entries named per node in a report; the rest are counted


@dataclass(frozen=True)
class NodeView:
    """What a node holds: its directory's mode, every entry at a key name, our temp files, and
    when reported the directory's attributes and those above it, from ``/`` down."""

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


@dataclass(frozen=True)
class NodePlan:
    """The changes one node needs: ``add`` (phase 1) and ``replace`` (phase 2) indices to write,
    ``delete`` (phase 2) entry names, e.g. (5,), (0,), ("2", "099"); ``invalid`` directories at
    key names and ``unreachable`` (a directory above the repository) are never changed by
    keysyncd; ``changes`` says why, as reports show it."""

    add: tuple[int, ...] = ()
    replace: tuple[int, ...] = ()
    delete: tuple[str, ...] = ()
    fix_directory: bool = False
    cleanup: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    diverged: str | None = None
    reasons: Mapping[str, Any] = field(default_factory=dict)
    unlisted: int = 0  # odd entries beyond the MAX_LISTED named in ``reasons``
    unreachable: str | None = None

    @property
    def unfixable(self) -> bool:
        """Return True if no push can bring the node in sync (its owner cannot pass a directory
        above, or a directory sits at a key name): a dry run predicts the real run's failure."""
        return bool(self.unreachable or self.invalid)

    @property
    def in_sync(self) -> bool:
        """Return True when keystone there loads exactly the expected keys, as they should be."""
        return not (
            self.add
            or self.replace
            or self.delete
            or self.fix_directory
            or self.invalid
            or self.diverged
            or self.unreachable
        )

    def changes(self) -> dict[str, Any]:
        """Return what differs, as reports show it: missing, changed and extra indices, wrong
        modes or owners, and every odd entry (escaped name, key id, problem)."""
        changes: dict[str, Any] = {key: list(value) for key, value in self.reasons.items()}
        if self.unlisted:
            changes["unlisted"] = self.unlisted
        return changes


def divergence(
    expected: Mapping[int, str], view: NodeView, revoked: Collection[str] = ()
) -> str | None:
    """Return why the node holds a newer or unrelated key set, or None: a valid key above 0 with
    other content, or a key keystone would load above the controller's primary (``099`` loads
    as 99; a symlink counts), means someone else rotated or bootstrapped it, and overwriting
    could destroy the only copy of a key in use (neither keystone nor keysyncd rewrites one).
    A ``revoked`` key (digest) is no one's key in use: it is removed, never a reason to stop."""
    top = max(expected, default=0)
    for index, entries in sorted(view.keystone.loaded.items(), reverse=True):
        for entry in entries:
            if entry.digest is not None and entry.digest in revoked:
                continue
            keylike = (
                entry.valid_key
                or entry.type is EntryType.SYMLINK
                or entry.problem == CHANGED_WHILE_READ  # swapped mid-read: assume the worst
            )
            if index > top and keylike:
                return (
                    f"holds key {index} ({show_name(entry.name)}), newer than the "
                    f"controller's primary {top}"
                )
            unrelated = entry.canonical and entry.valid_key and entry.digest != expected.get(index)
            if index > 0 and index in expected and unrelated:
                return f"key {index} has content unrelated to the controller's key {index}"
    return None


def diff(
    expected: Mapping[int, str],
    view: NodeView,
    owner: Ownership | None = None,
    force: bool = False,
    revoked: Collection[str] = (),
) -> NodePlan:
    """Return the NodePlan turning ``view`` into ``expected`` (index -> digest); a diverged node
    gets an empty plan with ``diverged`` set, unless ``force`` (``revoked``: digests that never
    make a node diverged)."""
    reason = divergence(expected, view, revoked)
    if reason and not force:
        return NodePlan(cleanup=view.temp_files, diverged=reason)
    plan = _Planner(expected, view, owner or Ownership()).plan()
    held = revoked_held(view, set(revoked) - set(expected.values()))
    if not held:
        return plan
    # said apart from the extra or changed key it also is: a revoked key came back (reported)
    return replace(plan, reasons={**plan.reasons, "revoked": held})


def revoked_held(view: NodeView, revoked: Collection[str]) -> tuple[int, ...]:
    """Return the indices of the entries of ``view`` holding a ``revoked`` key (digest), such as
    ``(9,)``: a key the controller no longer has, back on the node (restored, copied)."""
    held = {e.index for e in view.entries if e.digest is not None and e.digest in revoked}
    return tuple(sorted(index for index in held if index is not None))


class _Planner:
    """Walks one node's entries once, sorting each into the plan and the reasons."""

    def __init__(self, expected: Mapping[int, str], view: NodeView, owner: Ownership) -> None:
        self.expected = expected
        self.view = view
        self.owner = owner
        self.add: list[int] = []
        self.replace: list[int] = []
        self.delete: list[str] = []
        self.invalid: list[str] = []
        kinds = ("missing", "changed", "extra", "mode", "entries")
        self.reasons: dict[str, list[Any]] = {kind: [] for kind in kinds}

    def plan(self) -> NodePlan:
        by_name = {entry.name: entry for entry in self.view.entries}
        loaded = self.view.keystone.ids
        for index in sorted(self.expected, reverse=True):
            self._expected_key(index, by_name.get(str(index)), index in loaded)
        for entry in self.view.entries:
            if entry.index not in self.expected or not entry.canonical:
                self._unexpected(entry)
        # keystone must pass through every directory above (never changed: reported only)
        unreachable = ancestor_problem(self.owner.user, self.view.ancestors)
        fix_directory = self._directory()
        if unreachable is not None:
            self.reasons["access"] = [unreachable, *self.reasons.get("access", ())]
        reasons = {key: self._ordered(key, value) for key, value in self.reasons.items() if value}
        return NodePlan(
            add=tuple(self.add),
            replace=tuple(sorted(self.replace, key=lambda index: (index == 0, -index))),
            delete=tuple(sorted(self.delete)),
            fix_directory=fix_directory,
            cleanup=self.view.temp_files,
            invalid=tuple(sorted(self.invalid)),
            reasons=reasons,
            unlisted=max(len(self.reasons["entries"]) - MAX_LISTED, 0),
            unreachable=unreachable,
        )

    def _directory(self) -> bool:
        """Return True if the directory needs mode 0700 and the configured owner: its mode is
        unsafe, or the owner cannot list it. A safe one keystone can use is left as it is."""
        reported = self.view.directory  # None: not reported (an old listing): the mode alone
        directory = reported or PathInfo("the repository directory", self.view.directory_mode)
        user = self.owner.user if reported is not None else None
        problem = directory_problem(directory, user, READ | EXECUTE)
        if problem == "mode":
            self.reasons["mode"].append("directory")
        elif problem is not None:
            self.reasons["access"] = [problem]
            return True
        if reported is not None:  # and every key keystone loads can be read
            keys = [
                PathInfo(f"{directory.path}/{entry.name}", entry.mode, entry.uid, entry.gid)
                for entry in self.view.entries
                if entry.type is EntryType.FILE and entry.loaded
            ]
            unreadable = access_problem(user, (), keys)
            if unreadable is not None:
                self.reasons["access"] = [unreadable]
        return problem is not None

    @staticmethod
    def _ordered(key: str, values: list[Any]) -> tuple[Any, ...]:
        """Return a reason's values in a stable order (missing keeps phase 1's); at most MAX_LISTED
        odd entries, so thousands on a node never make reports and the journal as long."""
        if key == "entries":
            return tuple(sorted(values, key=lambda odd: odd["name"])[:MAX_LISTED])
        if key in ("extra", "changed"):
            return tuple(sorted(values))
        return tuple(values)

    def _odd(self, entry: Entry, problem: str) -> None:
        self.reasons["entries"].append(
            {"name": show_name(entry.name), "index": entry.index, "problem": problem}
        )

    def _expected_key(self, index: int, entry: Entry | None, loaded: bool) -> None:
        if entry is not None and entry.type is EntryType.DIRECTORY:
            self.invalid.append(entry.name)
            self._odd(entry, "a directory where key file is expected: remove it on the node")
            return
        if not loaded:  # keystone lacks this key there: adding it takes nothing away (phase 1)
            self.add.append(index)
            self.reasons["missing"].append(index)
            if entry is not None:
                self._odd(entry, entry_problem(entry) or "not loadable")
            return
        if entry is None:  # keystone loads it only through another name
            self.replace.append(index)
            self.reasons["missing"].append(index)
            return
        problem = entry_problem(entry)
        if problem is not None:
            self.replace.append(index)
            self._odd(entry, problem)
        elif entry.digest != self.expected[index]:  # other content, valid or not (or unread)
            self.replace.append(index)
            self.reasons["changed"].append(index)
        elif entry.mode != FILE_MODE or not self.owner.matches(entry):
            self.replace.append(index)  # rewritten whole, never chmod-ed: see module doc
            self.reasons["mode"].append(index)

    def _unexpected(self, entry: Entry) -> None:
        if entry.type is EntryType.DIRECTORY:
            self.invalid.append(entry.name)
            self._odd(entry, "a directory at a key name: remove it on the node")
            return
        self.delete.append(entry.name)
        problem = entry_problem(entry)
        if problem is None and entry.index is not None:
            self.reasons["extra"].append(entry.index)
        else:
            self._odd(entry, problem or "not a key")
