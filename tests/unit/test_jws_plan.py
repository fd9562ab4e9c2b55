"""A node's JWS plan (core/jwsplan.py), compared whole: every field and every reason.

The checks compare the entire ``JwsNodePlan`` and the report line, not one property, so a
change to any decision (which phase an entry goes to, what counts as in sync, what the
report says) fails here in milliseconds rather than only in the fleet tests.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from keysyncd.core.changewords import describe_jws
from keysyncd.core.jwsplan import MAX_LISTED, JwsExpected, JwsNodePlan, JwsView
from keysyncd.core.jwsplan import diff_jws as diff
from keysyncd.core.keyring import digest_of
from keysyncd.core.view import Entry, EntryType

A, B, C, PRIVATE = (digest_of(content) for content in (b"A", b"B", b"C", b"private"))
UID = 42425


def public(name: str, digest: str | None, **fields: Any) -> Entry:
    """Return a public-directory entry: a 0600 regular file of ``UID`` unless ``fields``
    say otherwise (any Entry field, ``type`` included)."""
    return replace(Entry(name, EntryType.FILE, 0o600, 1, UID, digest=digest), **fields)


def private(digest: str | None = PRIVATE, **fields: object) -> Entry:
    """Return a private.pem entry: a 0600 regular file of ``UID`` unless told."""
    return public("private.pem", digest, **fields)


def node(
    *entries: Entry,
    key: Entry | None = None,
    modes: tuple[int | None, int | None] = (0o700, 0o700),
    temp: tuple[str, ...] = (),
) -> JwsView:
    """Return a view: ``modes`` are (public, private) directory modes, None for missing."""
    return JwsView(modes[0], entries, modes[1], key, temp)


EXPECTED = JwsExpected({"a-1.pem": A, "b-1.pem": B}, PRIVATE)
EXACT = node(public("a-1.pem", A), public("b-1.pem", B), key=private())


def test_a_node_holding_exactly_the_keys_is_in_sync() -> None:
    plan = diff(EXPECTED, EXACT, UID)
    assert plan == JwsNodePlan()
    assert plan.in_sync and plan.public_in_sync and plan.holds_every_public_key
    assert plan.changes() == {} and describe_jws(plan.changes()) == ""
    assert diff(EXPECTED, EXACT) == JwsNodePlan(), "no owner asked: none checked"


def test_a_new_node_gets_both_directories_and_every_key() -> None:
    plan = diff(EXPECTED, node(modes=(None, None)), UID)
    reasons = {
        "missing": ["a-1.pem", "b-1.pem"],
        "private": "missing",
        "directories": ["private: missing", "public: missing"],
    }
    assert plan == JwsNodePlan(
        make_directories=("private", "public"),
        add=("a-1.pem", "b-1.pem"),
        private="missing",
        reasons=reasons,
    )
    assert not plan.holds_every_public_key and not plan.public_in_sync and not plan.in_sync
    assert describe_jws(plan.changes()) == (
        "missing public a-1.pem, b-1.pem, private.pem: missing, "
        "directory private: missing, directory public: missing"
    )


def test_directory_modes_are_fixed_without_touching_keys() -> None:
    view = node(public("a-1.pem", A), public("b-1.pem", B), key=private(), modes=(0o755, 0o701))
    plan = diff(EXPECTED, view, UID)
    assert plan == JwsNodePlan(
        fix_modes=("private", "public"),
        reasons={"directories": ["private: mode", "public: mode"]},
    )
    assert plan.public_in_sync and plan.holds_every_public_key and not plan.in_sync


def test_each_odd_public_entry_goes_where_keystone_needs_it() -> None:
    view = node(
        public("b-1.pem", C),  # expected, wrong content: replaced
        public("a-1.pem", A, mode=0o644),  # right content, wrong mode: a fresh copy
        public("z.pem", A),  # not expected: deleted
        public(".keysyncd-1.tmp", None, problem="empty key"),  # a temp file: deleted
        public("link.pem", None, type=EntryType.SYMLINK),  # not expected: deleted
        public("sub", None, type=EntryType.DIRECTORY, mode=0o700),  # keysyncd never removes
        key=private(),
    )
    plan = diff(EXPECTED, view, UID)
    entries = [
        {"name": "'.keysyncd-1.tmp'", "problem": "not a public key keysyncd distributes"},
        {"name": "'a-1.pem'", "problem": "wrong mode or owner"},
        {"name": "'b-1.pem'", "problem": "other content than the public key"},
        {"name": "'link.pem'", "problem": "not a public key keysyncd distributes"},
        {
            "name": "'sub'",
            "problem": "a directory in the public key directory: keystone cannot read it; "
            "remove it",
        },
        {"name": "'z.pem'", "problem": "not a public key keysyncd distributes"},
    ]
    assert plan == JwsNodePlan(
        replace=("b-1.pem",),
        rewrite=("a-1.pem",),
        delete=(".keysyncd-1.tmp", "link.pem", "z.pem"),
        invalid=("sub",),
        reasons={"entries": entries},
    )
    assert not plan.holds_every_public_key and not plan.public_in_sync


def test_public_keys_right_but_open_or_foreign_get_fresh_copies_and_pass_the_gate() -> None:
    """keystone-manage writes 0644 files: keystone validates with them as they are, so the
    gate lets the private keys through; phase 2 writes a fresh copy of each (never chmod)."""
    view = node(public("a-1.pem", A, mode=0o644), public("b-1.pem", B, uid=7), key=private())
    plan = diff(EXPECTED, view, UID)
    odd = [{"name": f"'{n}'", "problem": "wrong mode or owner"} for n in ("a-1.pem", "b-1.pem")]
    assert plan == JwsNodePlan(rewrite=("a-1.pem", "b-1.pem"), reasons={"entries": odd})
    assert plan.holds_every_public_key and not plan.public_in_sync and not plan.in_sync


def test_an_expected_name_that_is_no_regular_file_is_replaced_saying_what_it_is() -> None:
    view = node(public("a-1.pem", None, type=EntryType.FIFO), public("b-1.pem", B), key=private())
    plan = diff(EXPECTED, view, UID)
    assert plan.replace == ("a-1.pem",) and plan.delete == () and plan.invalid == ()
    assert plan.reasons == {
        "entries": [{"name": "'a-1.pem'", "problem": "a fifo, not a regular file"}]
    }


def test_a_read_problem_is_reported_as_it_was_found() -> None:
    view = node(
        public("a-1.pem", C, problem="not a public key"), public("b-1.pem", B), key=private()
    )
    plan = diff(EXPECTED, view, UID)
    assert plan.reasons == {"entries": [{"name": "'a-1.pem'", "problem": "not a public key"}]}


def test_a_public_key_of_another_owner_is_replaced_by_a_fresh_copy() -> None:
    view = node(public("a-1.pem", A, uid=0), public("b-1.pem", B), key=private())
    plan = diff(EXPECTED, view, UID)
    assert plan.rewrite == ("a-1.pem",) and plan.replace == () and not plan.in_sync
    assert diff(EXPECTED, view).in_sync, "owner unchecked when none is configured"


def test_extra_keys_do_not_stop_tokens_but_are_not_in_sync() -> None:
    view = node(public("a-1.pem", A), public("b-1.pem", B), public("c-9.pem", C), key=private())
    plan = diff(EXPECTED, view, UID)
    assert plan.holds_every_public_key and not plan.public_in_sync and not plan.in_sync
    assert plan.delete == ("c-9.pem",)


def test_retired_public_keys_go_in_phase_two_and_are_named_as_retired() -> None:
    expected = JwsExpected({"a-2.pem": A}, PRIVATE, retired=frozenset({"a-1.pem", "sub"}))
    view = node(
        public("a-1.pem", B),
        public("a-2.pem", A),
        public("sub", None, type=EntryType.DIRECTORY, mode=0o700),
        key=private(),
    )
    plan = diff(expected, view, UID)
    directory_problem = (
        "a directory in the public key directory: keystone cannot read it; remove it"
    )
    assert plan == JwsNodePlan(
        delete=("a-1.pem",),
        invalid=("sub",),  # a retired name that is a directory is still not ours to remove
        reasons={
            "retired": ["a-1.pem"],
            "entries": [{"name": "'sub'", "problem": directory_problem}],
        },
    )
    assert describe_jws(plan.changes()) == (
        f"retired public a-1.pem, public 'sub': {directory_problem}"
    )


def test_a_retired_name_still_expected_is_kept() -> None:
    expected = JwsExpected({"a-1.pem": A}, PRIVATE, retired=frozenset({"a-1.pem"}))
    plan = diff(expected, node(public("a-1.pem", A), key=private()), UID)
    assert plan == JwsNodePlan()


def test_the_private_key_problems_are_told_apart() -> None:
    cases = {
        "missing": None,
        "a symlink, not a regular file": private(None, type=EntryType.SYMLINK),
        "other content than the private key keysyncd installed": private(C),
        "wrong mode or owner (others may have read it: it is replaced by a new pair)": private(
            mode=0o640
        ),
    }
    for problem, key in cases.items():
        view = node(public("a-1.pem", A), public("b-1.pem", B), key=key)
        plan = diff(EXPECTED, view, UID)
        assert plan == JwsNodePlan(private=problem, reasons={"private": problem}), problem
        assert plan.public_in_sync and not plan.in_sync
        assert describe_jws(plan.changes()) == f"private.pem: {problem}"
    unowned = node(public("a-1.pem", A), public("b-1.pem", B), key=private(uid=0))
    assert diff(EXPECTED, unowned, UID).private is not None
    assert diff(EXPECTED, unowned).private is None


def test_a_node_without_an_installed_pair_has_no_private_problem() -> None:
    expected = JwsExpected({"a-1.pem": A}, None)
    for key in (None, private(C), private(None, type=EntryType.FIFO)):
        plan = diff(expected, node(public("a-1.pem", A), key=key), UID)
        assert plan == JwsNodePlan(), key


def test_the_new_pair_a_rotation_installs_is_called_so() -> None:
    expected = JwsExpected({"a-1.pem": A}, PRIVATE, replacing=C)
    rotated = diff(expected, node(public("a-1.pem", A), key=private(C)), UID)
    said = "rotated: the node's new key pair is installed"
    assert rotated == JwsNodePlan(private=said, reasons={"private": said})
    other = diff(expected, node(public("a-1.pem", A), key=private(B)), UID)
    assert other.private == "other content than the private key keysyncd installed"
    unread = diff(expected, node(public("a-1.pem", A), key=private(None)), UID)
    assert unread.private == "other content than the private key keysyncd installed"


def test_temp_files_in_the_private_directory_are_cleaned_up() -> None:
    view = node(public("a-1.pem", A), public("b-1.pem", B), key=private(), temp=(".keysyncd-x",))
    plan = diff(EXPECTED, view, UID)
    assert plan == JwsNodePlan(cleanup=(".keysyncd-x",))
    assert plan.in_sync, "a leftover temp file there is never loaded by keystone"


def test_many_odd_entries_are_counted_beyond_the_listed_ones() -> None:
    count = MAX_LISTED + 3
    strays = [public(f"x{i:02d}", A) for i in range(count)]
    view = node(public("a-1.pem", A), public("b-1.pem", B), *strays, key=private())
    plan = diff(EXPECTED, view, UID)
    assert len(plan.delete) == count
    assert len(plan.reasons["entries"]) == MAX_LISTED and plan.reasons["unlisted"] == 3
    assert describe_jws(plan.changes()).endswith(", and 3 more entries")
    retired = frozenset(f"x{i:02d}" for i in range(count))
    many = diff(JwsExpected(EXPECTED.public, PRIVATE, retired=retired), view, UID)
    assert len(many.reasons["retired"]) == MAX_LISTED and "unlisted" not in many.reasons


def test_names_are_escaped_in_reports() -> None:
    view = node(public("a-1.pem", A), public("b-1.pem", B), public("evil\n\x1b", A), key=private())
    plan = diff(EXPECTED, view, UID)
    shown = plan.reasons["entries"][0]["name"]
    assert "\n" not in shown and "\x1b" not in shown
    assert "\n" not in describe_jws(plan.changes())


def test_the_summary_names_each_digest_seen() -> None:
    view = node(
        public("b-1.pem", B),
        public("a-1.pem", A),
        public("fifo", None, type=EntryType.FIFO),
        key=private(),
    )
    assert view.summary() == {
        "private/private.pem": PRIVATE,
        "public/a-1.pem": A,
        "public/b-1.pem": B,
    }
    assert list(view.summary()) == sorted(view.summary())
    assert node(key=private(None)).summary() == {}
    assert node().summary() == {}
