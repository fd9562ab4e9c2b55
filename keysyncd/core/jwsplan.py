"""What one node needs for a ``jws`` repository, as a value. Pure. Keystone reads *every*
public directory entry as a key (a directory raises, a FIFO blocks, a partial file fails) and
only ``private.pem`` in the private one: the public one holds exactly the expected keys as
regular files. An owner must pass every directory above (only reported), enter and list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
from keysyncd.core.names import FILE_MODE, show_name
from keysyncd.core.nodeplan import MAX_LISTED as MAX_LISTED
from keysyncd.core.view import Entry, EntryType

WRONG_MODE = "wrong mode or owner"  # a public key's content is right: a fresh copy fixes it


@dataclass(frozen=True)
class JwsView:
    """A node's two directories as read: ``None`` for a directory that does not exist."""

    public_mode: int | None
    public: tuple[Entry, ...]  # every entry, whatever its name (keystone reads them all)
    private_mode: int | None
    private_key: Entry | None  # private.pem (lstat; its digest when it was read)
    temp_files: tuple[str, ...] = ()  # keysyncd's temp files in the private directory
    public_info: PathInfo | None = None  # the directories' path and owner, when reported
    private_info: PathInfo | None = None
    # the directories above both, each once, from the top down (read only for an owner)
    ancestors: tuple[PathInfo, ...] = ()

    def summary(self) -> dict[str, str]:
        """Return the digests seen, as reports show them: ``public/NAME`` and ``private.pem``."""
        found = {f"public/{e.name}": e.digest for e in self.public if e.digest is not None}
        if self.private_key is not None and self.private_key.digest is not None:
            found["private/private.pem"] = self.private_key.digest
        return dict(sorted(found.items()))


@dataclass(frozen=True)
class JwsExpected:
    """What one node must hold: every public key (name -> digest), and the digest of its
    private.pem (None while it has no installed pair)."""

    public: Mapping[str, str]
    private_digest: str | None
    retired: frozenset[str] = frozenset()  # old public keys retired by this run: they go
    replacing: str | None = None  # the private key's digest a rotation replaces now


@dataclass(frozen=True)
class JwsNodePlan:
    """The changes one node needs (``add``: phase 1; the rest: phase 2)."""

    make_directories: tuple[str, ...] = ()  # "private", "public" (phase 1)
    add: tuple[str, ...] = ()  # public keys missing there (phase 1)
    replace: tuple[str, ...] = ()  # public keys there that are wrong (phase 2)
    delete: tuple[str, ...] = ()  # entries in the public directory that must go (phase 2)
    fix_modes: tuple[str, ...] = ()  # directories with a wrong mode
    invalid: tuple[str, ...] = ()  # directories inside the public directory
    cleanup: tuple[str, ...] = ()  # keysyncd's temp files in the private directory
    private: str | None = None  # why private.pem is not what it must be (None: it is)
    reasons: Mapping[str, Any] = field(default_factory=dict)
    # public keys with the right content but a wrong mode or owner (keystone-made: 0644):
    # keystone validates with them as they are; phase 2 writes a fresh copy over each
    rewrite: tuple[str, ...] = ()
    # why the owner cannot pass through a directory above the key directories: keysyncd
    # never changes one, so the node stays not in sync until its administrator fixes it
    unreachable: str | None = None

    @property
    def holds_every_public_key(self) -> bool:
        """Return True when every expected public key is there, whole (what the gate asks: phase 2's
        removals and rewrites do not stop a token from validating)."""
        return not (self.make_directories or self.add or self.replace)

    @property
    def public_in_sync(self) -> bool:
        """Return True when the public directory holds exactly the expected keys."""
        return self.holds_every_public_key and not (self.rewrite or self.delete or self.invalid)

    @property
    def unfixable(self) -> bool:
        """Return True if no push can bring the node in sync (its owner cannot pass a directory
        above, or a directory sits at a key name): a dry run predicts the real run's failure."""
        return bool(self.unreachable or self.invalid)

    @property
    def in_sync(self) -> bool:
        """Return True when keystone there would sign and validate exactly as expected."""
        return (
            self.public_in_sync
            and self.private is None
            and not self.fix_modes
            and self.unreachable is None
        )

    def changes(self) -> dict[str, Any]:
        """Return what differs, as reports show it."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in self.reasons.items()
        }


@dataclass
class _PublicChanges:
    """What a node's public directory needs, entry by entry, with odd entries and retired keys."""

    add: tuple[str, ...] = ()  # missing
    replace: list[str] = field(default_factory=list)
    rewrite: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    odd: list[dict[str, str]] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)

    def reasons(self) -> dict[str, Any]:
        """Return what differs in the public directory, as reports show it."""
        reasons: dict[str, Any] = {"missing": list(self.add)} if self.add else {}
        if self.retired:
            reasons["retired"] = self.retired[:MAX_LISTED]
        if self.odd:
            reasons["entries"] = self.odd[:MAX_LISTED]
            if len(self.odd) > MAX_LISTED:
                reasons["unlisted"] = len(self.odd) - MAX_LISTED
        return reasons


def _public_changes(expected: JwsExpected, view: JwsView, uid: int | None) -> _PublicChanges:
    """Return what the node's public key files need."""
    listed = {entry.name for entry in view.public}
    changes = _PublicChanges(tuple(sorted(name for name in expected.public if name not in listed)))
    for entry in sorted(view.public, key=lambda e: e.name):
        wanted = expected.public.get(entry.name)
        retiring = entry.name in expected.retired and entry.name not in expected.public
        if retiring and entry.type is not EntryType.DIRECTORY:
            changes.retired.append(entry.name)  # no live token needs it: deleted in phase 2
            changes.delete.append(entry.name)
            continue
        problem = _public_problem(entry, wanted, uid)
        if problem is None:
            continue
        changes.odd.append({"name": show_name(entry.name), "problem": problem})
        if entry.type is EntryType.DIRECTORY:
            changes.invalid.append(entry.name)
        elif problem == WRONG_MODE:
            changes.rewrite.append(entry.name)
        elif wanted is not None:
            changes.replace.append(entry.name)
        else:
            changes.delete.append(entry.name)
    return changes


def diff_jws(
    expected: JwsExpected, view: JwsView, uid: int | None = None, user: User | None = None
) -> JwsNodePlan:
    """Return the plan turning ``view`` into ``expected``; ``user`` (the configured owner) must
    reach private.pem and list and read the public keys."""
    modes = {"private": view.private_mode, "public": view.public_mode}
    make = tuple(name for name, mode in modes.items() if mode is None)
    problems = _directory_problems(view, user)
    fix_modes = tuple(name for name, _ in problems)
    public = _public_changes(expected, view, uid)
    reasons: dict[str, Any] = public.reasons()
    private = _private_problem(view.private_key, expected, uid)
    if private:
        reasons["private"] = private
    if make or fix_modes:
        missing = [f"{name}: missing" for name in make]
        reasons["directories"] = missing + [f"{name}: {problem}" for name, problem in problems]
    unreachable = ancestor_problem(user, view.ancestors)
    unreadable = _unreadable(view, user)
    access = [unreachable, None if fix_modes else unreadable]
    if any(access):
        reasons["access"] = ", ".join(problem for problem in access if problem)
    return JwsNodePlan(
        make,
        public.add,
        tuple(public.replace),
        tuple(public.delete),
        fix_modes,
        tuple(public.invalid),
        view.temp_files,
        private,
        reasons,
        tuple(public.rewrite),
        unreachable,
    )


def _directory_problems(view: JwsView, user: User | None) -> list[tuple[str, str]]:
    """Return (directory, why) for each existing directory to set to 0700 and the owner: an
    unsafe mode (``"mode"``), or the owner cannot list the public one or enter the private one."""
    problems = []
    for name, mode, info, wanted in (
        ("private", view.private_mode, view.private_info, EXECUTE),
        ("public", view.public_mode, view.public_info, READ | EXECUTE),
    ):
        if mode is None:
            continue
        # attributes not reported (an old listing): the mode alone
        found = directory_problem(info or PathInfo(name, mode), user if info else None, wanted)
        if found is not None:
            problems.append((name, found))
    return problems


def _unreadable(view: JwsView, user: User | None) -> str | None:
    """Return why ``user`` cannot read a key file keystone opens there, or None."""
    if view.public_info is None or view.private_info is None:
        return None
    keys = [
        PathInfo(f"{view.public_info.path}/{e.name}", e.mode, e.uid, e.gid)
        for e in view.public
        if e.type is EntryType.FILE
    ]
    if view.private_key is not None and view.private_key.type is EntryType.FILE:
        key = view.private_key
        keys.append(PathInfo(f"{view.private_info.path}/{key.name}", key.mode, key.uid, key.gid))
    return access_problem(user, (), keys)


def _public_problem(entry: Entry, wanted: str | None, uid: int | None) -> str | None:
    if entry.type is EntryType.DIRECTORY:
        return "a directory in the public key directory: keystone cannot read it; remove it"
    if wanted is None:
        return "not a public key keysyncd distributes"
    if entry.type is not EntryType.FILE:
        return f"a {entry.type.value}, not a regular file"
    if entry.digest != wanted:
        return entry.problem or "other content than the public key"
    if entry.mode != FILE_MODE or (uid is not None and entry.uid != uid):
        return WRONG_MODE
    return None


def _private_problem(entry: Entry | None, expected: JwsExpected, uid: int | None) -> str | None:
    """Return why private.pem (``entry``) is not the one ``expected``, None if it is."""
    wanted = expected.private_digest
    if wanted is None:
        return None
    if entry is None:
        return "missing"
    if entry.digest is not None and entry.digest == expected.replacing:
        return "rotated: the node's new key pair is installed"
    if entry.type is not EntryType.FILE:
        return f"a {entry.type.value}, not a regular file"
    if entry.digest != wanted:
        return "other content than the private key keysyncd installed"
    if entry.mode != FILE_MODE or (uid is not None and entry.uid != uid):
        return "wrong mode or owner (others may have read it: it is replaced by a new pair)"
    return None
