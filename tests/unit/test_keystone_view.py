"""keysyncd's view of a key directory agrees with keystone's loader, and the plan fixes it.

The property tests build a REAL directory from a random listing (names made of digits of
several scripts, signs, zero padding, whitespace and underscores; regular files, empty files,
symlinks to files, to directories, to FIFOs and dangling ones, directories and FIFOs), run
keystone's loader (tests/keystone_compat.py, transcribed from upstream) on it, and compare
with ``keystone_view`` fed the lstat/stat listing of the same directory.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysyncd.core.changewords import describe_changes
from keysyncd.core.keyring import digest_of
from keysyncd.core.kinds import KINDS
from keysyncd.core.names import canonical_index, key_index
from keysyncd.core.nodeplan import NodePlan, NodeView, Ownership, diff
from keysyncd.core.view import (
    Entry,
    EntryType,
    entry_type,
    keystone_view,
    needs_content,
    with_content,
)
from tests.keystone_compat import get_key_files

KIND = KINDS["fernet"]
DIGITS = "0123456789" + "\u0660\u0663\u0669" + "\u0966\u0967" + "\uff10\uff11\uff15"  # several
SPACES = " \t\n\u3000\x0b"
KEYS = [Fernet.generate_key() for _ in range(4)]

# -- building a real directory from a listing ------------------------------------------------

names = st.one_of(
    st.integers(0, 12).map(str),
    st.builds(
        lambda sign, pad, digits, under, lead, trail: (
            f"{lead}{sign}{pad}{under.join(digits)}{trail}"
        ),
        st.sampled_from(["", "", "+", "-"]),
        st.sampled_from(["", "", "0", "00"]),
        st.lists(st.sampled_from(DIGITS), min_size=1, max_size=3),
        st.sampled_from(["", "", "_"]),
        st.sampled_from(["", "", *SPACES]),
        st.sampled_from(["", "", *SPACES]),
    ),
    st.sampled_from(["x", ".keysyncd-1.tmp", "1.tmp", "1 2", "_1", "1_", "--1", "0x1", "1e2"]),
)
CONTENTS = [b"", b"junk", *KEYS]
KINDS_OF_ENTRY = [
    "file",
    "file",
    "file",
    "link-file-outside",
    "link-empty-outside",
    "link-dir",
    "link-fifo",
    "link-dangling",
    "link-sibling",
    "directory",
    "fifo",
]
entries = st.lists(
    st.tuples(names, st.sampled_from(KINDS_OF_ENTRY), st.sampled_from(CONTENTS)),
    max_size=8,
    unique_by=lambda entry: entry[0],
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="keysyncd-view-"))
    outside = root / "outside"
    outside.mkdir()
    (outside / "key").write_bytes(KEYS[0])
    (outside / "empty").write_bytes(b"")
    (outside / "dir").mkdir()
    os.mkfifo(outside / "fifo")
    yield root
    shutil.rmtree(root)


def build(directory: Path, listing: list[tuple[str, str, bytes]]) -> None:
    """Create ``listing`` (name, kind, content) for real in a fresh ``directory``."""
    outside = directory.parent / "outside"
    for name, kind, content in listing:
        path = directory / name
        if kind == "file":
            path.write_bytes(content)
        elif kind == "directory":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            target = {
                "link-file-outside": outside / "key",
                "link-empty-outside": outside / "empty",
                "link-dir": outside / "dir",
                "link-fifo": outside / "fifo",
                "link-dangling": outside / "nothing-here",
                "link-sibling": directory / "0",  # another entry, maybe missing or odd
            }[kind]
            path.symlink_to(target)


def local_listing(directory: Path) -> list[Entry]:
    """Return the entries at key names with lstat semantics, as a node's listing gives them."""
    found = []
    for name in os.listdir(directory):
        if key_index(name) is None:
            continue
        info = os.lstat(directory / name)
        kind = entry_type(info.st_mode)
        target = target_size = None
        if kind is EntryType.SYMLINK:
            try:
                pointed = os.stat(directory / name)
                target, target_size = entry_type(pointed.st_mode), pointed.st_size
            except OSError:
                target = EntryType.MISSING
        entry = Entry(name, kind, stat.S_IMODE(info.st_mode), info.st_size, target=target,
                      target_size=target_size)  # fmt: skip
        if needs_content(entry, EXPECTED):
            entry = with_content(entry, (directory / name).read_bytes(), KIND.problem)
        found.append(entry)
    return found


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(listing=entries)
def test_view_agrees_with_keystones_loader(scratch: Path, listing: list) -> None:
    directory = scratch / "keys"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    build(directory, listing)
    keystone_files, keystone_keys = get_key_files(str(directory))
    view = keystone_view(local_listing(directory))
    assert set(view.loaded) == set(keystone_files)
    for index, path in keystone_files.items():
        # which of several names for one id keystone takes depends on directory order
        assert os.path.basename(path) in {entry.name for entry in view.loaded[index]}
        assert keystone_keys[index]


# -- the plan, applied to a model directory, leaves exactly the expected keys ---------------

EXPECTED = {0: digest_of(KEYS[1]), 1: digest_of(KEYS[2]), 2: digest_of(KEYS[3])}
MATERIAL = {digest_of(key): key for key in KEYS}


def expected_file(index: int) -> Entry:
    return with_content(Entry(str(index), EntryType.FILE, 0o600, 44, uid=0, gid=0),
                        MATERIAL[EXPECTED[index]], KIND.problem)  # fmt: skip


def model_entry(name: str, kind: str, content: bytes) -> Entry:
    if kind == "file":
        entry = Entry(name, EntryType.FILE, 0o600, len(content))
        return (
            with_content(entry, content, KIND.problem) if needs_content(entry, EXPECTED) else entry
        )
    if kind == "directory":
        return Entry(name, EntryType.DIRECTORY, 0o700)
    if kind == "fifo":
        return Entry(name, EntryType.FIFO, 0o600)
    target = {"link-file-outside": EntryType.FILE, "link-empty-outside": EntryType.FILE,
              "link-dir": EntryType.DIRECTORY, "link-fifo": EntryType.FIFO}.get(kind)  # fmt: skip
    size = 0 if kind == "link-empty-outside" else 44
    return Entry(name, EntryType.SYMLINK, 0o777, 10, target=target or EntryType.MISSING,
                 target_size=size if target else None)  # fmt: skip


def apply(view: NodeView, plan: NodePlan) -> list[Entry]:
    """Return the entries after ``plan`` ran as FleetAction runs it (rename, unlink)."""
    current = {entry.name: entry for entry in view.entries}
    for index in (*plan.add, *plan.replace):
        if current.get(str(index), Entry("", EntryType.FILE)).type is not EntryType.DIRECTORY:
            current[str(index)] = expected_file(index)
    for name in plan.delete:
        assert current[name].type is not EntryType.DIRECTORY, "unlink never removes a directory"
        del current[name]
    return list(current.values())


@settings(max_examples=500, deadline=None)
@given(listing=entries, force=st.booleans())
def test_plan_leaves_exactly_the_expected_keys(listing: list, force: bool) -> None:
    view = NodeView(0o700, tuple(model_entry(*entry) for entry in listing))
    plan = diff(EXPECTED, view, Ownership(), force)
    if plan.diverged:
        assert not force
        assert not (plan.add or plan.replace or plan.delete), "a diverged node is left alone"
        return
    after = NodeView(0o700, tuple(apply(view, plan)))
    check = diff(EXPECTED, after)
    if plan.invalid:  # a directory at a key name stays; everything else is fixed
        blocked = {canonical_index(name) for name in plan.invalid}
        assert check.invalid == plan.invalid and not (check.replace or check.delete)
        assert set(check.add) <= blocked
        return
    assert check.in_sync, check.changes()
    loaded = keystone_view(after.entries).loaded
    assert {i: tuple(e.digest for e in found) for i, found in loaded.items()} == {
        i: (digest,) for i, digest in EXPECTED.items()
    }
    # phase 1 only adds keys keystone lacks there; what keystone loads is touched in phase 2
    for index in plan.add:
        assert index not in keystone_view(view.entries).ids


# -- the rules, case by case ----------------------------------------------------------------


def node(*extra: Entry) -> NodeView:
    return NodeView(0o700, (*(expected_file(i) for i in EXPECTED), *extra))


def test_canonical_names_are_keysyncds_only() -> None:
    assert [canonical_index(n) for n in ("0", "12", "012", "+1", " 1", "-1", "\u0661")] == [
        0, 12, None, None, None, None, None,
    ]  # fmt: skip
    assert [key_index(n) for n in ("012", "+1", " 1\n", "-1", "1_0", "\u0661")] == [
        12, 1, 1, -1, 10, 1,
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["099", " 99", "99 ", "+99", "9_9", "\u0669\u0669"])
def test_a_valid_key_keystone_loads_above_the_primary_means_diverged(name: str) -> None:
    planted = with_content(Entry(name, EntryType.FILE, 0o600, 44), KEYS[0], KIND.problem)
    plan = diff(EXPECTED, node(planted))
    assert plan.diverged is not None and "newer than the controller's primary 2" in plan.diverged
    assert ascii(name) in plan.diverged
    forced = diff(EXPECTED, node(planted), force=True)
    assert forced.delete == (name,) and not forced.diverged


@pytest.mark.parametrize("index", [1, 2])
def test_a_valid_key_with_other_content_at_an_expected_index_means_diverged(index: int) -> None:
    """Keys above 0 are never rewritten: other valid content there is someone else's key, maybe
    the only copy of one in use; only --force overwrites it."""
    theirs = with_content(Entry(str(index), EntryType.FILE, 0o600, 44), KEYS[0], KIND.problem)
    others = [expected_file(i) for i in sorted(EXPECTED) if i != index]
    view = NodeView(0o700, (*others, theirs))
    plan = diff(EXPECTED, view)
    assert plan.diverged == f"key {index} has content unrelated to the controller's key {index}"
    assert plan.in_sync is False and not (plan.add or plan.replace or plan.delete)
    assert diff(EXPECTED, view, force=True).replace == (index,)


@pytest.mark.parametrize("name", ["01", "-1", "1 ", "+0", "00"])
def test_other_names_keystone_loads_are_drift_removed_in_phase_2(name: str) -> None:
    planted = with_content(Entry(name, EntryType.FILE, 0o600, 44), KEYS[0], KIND.problem)
    plan = diff(EXPECTED, node(planted))
    assert not plan.in_sync and plan.diverged is None
    assert plan.delete == (name,) and not plan.add and not plan.replace
    (odd,) = plan.changes()["entries"]
    assert odd["name"] == ascii(name) and odd["index"] == int(name)


def test_a_symlink_at_an_expected_name_is_replaced_never_followed() -> None:
    link = Entry("1", EntryType.SYMLINK, 0o777, 10, target=EntryType.FILE, target_size=44)
    view = NodeView(0o700, (expected_file(0), expected_file(2), link))
    plan = diff(EXPECTED, view)
    assert plan.replace == (1,) and not plan.delete
    assert "symlink" in plan.changes()["entries"][0]["problem"]


def test_special_files_at_key_names_are_removed_and_directories_reported() -> None:
    fifo = Entry("7", EntryType.FIFO, 0o600)
    sock = Entry("8", EntryType.SOCKET, 0o600)
    directory = Entry("9", EntryType.DIRECTORY, 0o700)
    plan = diff(EXPECTED, node(fifo, sock, directory))
    assert plan.delete == ("7", "8") and plan.invalid == ("9",) and not plan.in_sync


def test_a_wrong_mode_or_owner_is_fixed_by_rewriting_the_file() -> None:
    loose = replace(expected_file(1), mode=0o644)
    plan = diff(EXPECTED, NodeView(0o700, (expected_file(0), loose, expected_file(2))))
    assert plan.replace == (1,) and plan.changes()["mode"] == [1]
    foreign = replace(expected_file(2), uid=1000)
    view = NodeView(0o700, (expected_file(0), expected_file(1), foreign))
    assert diff(EXPECTED, view, Ownership(uid=0)).replace == (2,)
    assert diff(EXPECTED, view).in_sync  # no owner configured: any owner will do


def test_a_node_with_thousands_of_odd_entries_makes_a_short_report() -> None:
    """What a node plants must not make reports and the journal grow without bound."""
    odd = tuple(Entry(f"-{i}", EntryType.FILE, 0o600, 44) for i in range(1, 5001))
    plan = diff(EXPECTED, node(*odd))
    changes = plan.changes()
    assert len(changes["entries"]) == 20 and changes["unlisted"] == 4980
    assert len(plan.delete) == 5000, "every one of them is still removed"
    assert "and 4980 more entries" in describe_changes(changes)
    assert len(describe_changes(changes)) < 2000
