"""What a node needs, as a value: ``diff(expected, view) -> NodePlan``. Pure, no IO.

The plan is applied in two fleet-wide phases (safety rule 3): phase 1 adds new
indices, highest (the new primary) first; phase 2 replaces changed indices with
0 last, deletes retired ones and fixes modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keysyncd.keyring import digest_of
from keysyncd.kinds import KeyKind
from keysyncd.repository import parse_index
from keysyncd.transport import RemoteEntry, is_temp_name

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


@dataclass(frozen=True)
class NodeView:
    """What a node holds: digest, validity and mode of every integer-named file."""

    directory_mode: int
    digests: dict[int, str]
    modes: dict[int, int]
    valid: frozenset[int]
    temp_files: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def summary(self) -> dict[str, str]:
        """Return the digests keyed by the index as text, as reports show them."""
        return {str(index): digest for index, digest in sorted(self.digests.items())}


def view_of(
    directory_mode: int, entries: list[RemoteEntry], contents: dict[str, bytes], kind: KeyKind
) -> NodeView:
    """Return the NodeView built from a listing and the contents of its integer-named files."""
    digests: dict[int, str] = {}
    modes: dict[int, int] = {}
    valid: set[int] = set()
    problems: list[str] = []
    temps = []
    for entry in entries:
        if is_temp_name(entry.name):
            temps.append(entry.name)
        index = parse_index(entry.name)
        if index is None:
            continue
        if str(index) != entry.name or index < 0 or entry.name not in contents:
            problems.append(f"{entry.name}: not a canonical key file")
            continue
        content = contents[entry.name]
        digests[index] = digest_of(content)
        modes[index] = entry.mode & 0o7777
        problem = kind.problem(content)
        if problem:
            problems.append(f"{entry.name}: {problem}")
        else:
            valid.add(index)
    return NodeView(directory_mode, digests, modes, frozenset(valid), tuple(temps), tuple(problems))


@dataclass(frozen=True)
class NodePlan:
    """The changes one node needs. Example: add (5,), replace (0,), delete (2,)."""

    add: tuple[int, ...] = ()
    replace: tuple[int, ...] = ()
    delete: tuple[int, ...] = ()
    chmod: tuple[int, ...] = ()
    fix_directory: bool = False
    cleanup: tuple[str, ...] = ()
    diverged: str | None = None

    @property
    def in_sync(self) -> bool:
        """Return True when the node's keys and modes already match (temp files aside)."""
        return not (self.add or self.replace or self.delete or self.chmod or self.fix_directory)

    def changes(self) -> dict[str, Any]:
        """Return what differs, as reports show it: missing, changed, extra indices, modes."""
        return {
            "missing": list(self.add),
            "changed": list(self.replace),
            "extra": list(self.delete),
            "mode": list(self.chmod) + (["directory"] if self.fix_directory else []),
        }


def divergence(expected: dict[int, str], view: NodeView) -> str | None:
    """Return why the node holds a newer or unrelated key set, or None.

    Indices above 0 are never rewritten by keystone or keysyncd, so a valid key there
    with other content, or a valid key above the controller's primary, means the node
    was rotated or bootstrapped by someone else: overwriting it could destroy the only
    copy of a key in use.
    """
    top = max(expected, default=0)
    for index in sorted(view.valid, reverse=True):
        if index > top:
            return f"holds key {index}, newer than the controller's primary {top}"
        if index > 0 and index in expected and view.digests[index] != expected[index]:
            return f"key {index} has content unrelated to the controller's key {index}"
    return None


def diff(expected: dict[int, str], view: NodeView, force: bool = False) -> NodePlan:
    """Return the NodePlan turning ``view`` into ``expected`` (index -> digest).

    A diverged node gets an empty plan with ``diverged`` set, unless ``force``.
    """
    reason = divergence(expected, view)
    if reason and not force:
        return NodePlan(diverged=reason, cleanup=view.temp_files)
    add = sorted((i for i in expected if i not in view.digests), reverse=True)
    changed = [i for i in expected if i in view.digests and view.digests[i] != expected[i]]
    replace = sorted(changed, key=lambda index: (index == 0, -index))
    delete = sorted(i for i in view.digests if i not in expected)
    chmod = sorted(
        i for i in expected if i in view.modes and i not in changed and view.modes[i] != FILE_MODE
    )
    return NodePlan(
        add=tuple(add),
        replace=tuple(replace),
        delete=tuple(delete),
        chmod=tuple(chmod),
        fix_directory=view.directory_mode != DIRECTORY_MODE,
        cleanup=view.temp_files,
    )
