"""A node's view is kept for the next inspect only if it opened every file that inspect must
judge (``keysyncd.io.remote.fleet.view_covers``): a file left unopened would be judged as no
key at all, and a node's own key at an expected name replaced unseen."""

from __future__ import annotations

from keysyncd.core.nodeplan import NodeView
from keysyncd.core.view import Entry, EntryType
from keysyncd.io.remote.fleet import view_covers


def view(*names: str) -> NodeView:
    return NodeView(0o700, tuple(Entry(name, EntryType.FILE, 0o600, 44) for name in names))


def test_a_rotation_needs_nothing_its_first_read_left_unopened() -> None:
    """Read for staged 0, primary 2, secondary 1; the promotion expects 0..3 (3: the old
    staged key, a name above the former primary, which was opened as someone's newer key)."""
    held = view("0", "1", "2", "3")
    assert view_covers(held, frozenset({0, 1, 2}), {0: "a", 1: "b", 2: "c", 3: "d"})
    assert view_covers(held, frozenset({0, 1, 2}), {0: "a", 2: "c", 3: "d"})  # 1 retired


def test_a_file_unopened_at_a_name_now_expected_means_a_new_read() -> None:
    held = view("0", "1", "3")
    assert not view_covers(held, frozenset({0, 3}), {0: "a", 1: "b", 3: "c"})  # 1 unopened
    assert not view_covers(None, frozenset({0}), {0: "a"})  # nothing kept
