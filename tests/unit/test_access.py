"""Whether the configured owner can reach its keys (keysyncd.core.access), and what the plans
make of it: a safe directory keystone can use is left alone, one it cannot is reported and
fixed (0700 and the owner), nothing is checked when no owner is configured."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keysyncd.core.access import (
    EXECUTE,
    READ,
    WRITE,
    PathInfo,
    User,
    access_problem,
    directory_problem,
    permits,
    safe_directory,
)
from keysyncd.core.jwsplan import JwsExpected, JwsView, diff_jws
from keysyncd.core.nodeplan import NodeView, Ownership, diff
from keysyncd.core.view import Entry, EntryType

KEYSTONE = User(998, 997, "keystone")
RX = READ | EXECUTE


@pytest.mark.parametrize(
    ("uid", "gid", "mode", "wanted", "allowed"),
    [
        (0, 997, 0o750, RX, True),  # root:keystone 0750: the group bits
        (0, 0, 0o700, EXECUTE, False),  # root:root 0700: the other bits, none
        (0, 0, 0o701, EXECUTE, True),
        (0, 0, 0o701, RX, False),
        (998, 0, 0o700, RX, True),  # its own: the owner bits
        (998, 997, 0o070, EXECUTE, False),  # its own with no owner bits: group bits ignored
        (0, 997, 0o705, RX, False),  # its group with no group bits: other bits ignored
        (0, 997, 0o710, EXECUTE, True),
        (0, 997, 0o710, RX, False),
        (5, 5, 0o755, RX, True),
        (5, 5, 0o755, WRITE, False),
        (None, None, 0o700, EXECUTE, False),  # not reported: only the other bits
    ],
)
def test_posix_picks_one_class(
    uid: int | None, gid: int | None, mode: int, wanted: int, allowed: bool
) -> None:
    assert permits(KEYSTONE, PathInfo("/d", mode, uid, gid), wanted) is allowed


def test_root_may_do_anything() -> None:
    assert permits(User(0, 0), PathInfo("/d", 0o000, 5, 5), RX | WRITE)


modes = st.integers(0, 0o7777)
ids = st.sampled_from([0, 5, 997, 998])
bits = st.sampled_from([READ, WRITE, EXECUTE, RX])


@given(modes, modes, ids, ids, bits)
def test_more_bits_never_take_access_away(
    mode: int, extra: int, uid: int, gid: int, w: int
) -> None:
    if permits(KEYSTONE, PathInfo("/d", mode, uid, gid), w):
        assert permits(KEYSTONE, PathInfo("/d", mode | extra, uid, gid), w)


@given(modes, ids, ids, bits)
def test_only_the_selected_class_counts(mode: int, uid: int, gid: int, wanted: int) -> None:
    shift = 6 if uid == KEYSTONE.uid else 3 if gid == KEYSTONE.gid else 0
    others = 0o777 & ~(0o7 << shift)
    for changed in (mode & ~others, mode | others):  # the other classes' bits: no effect
        assert permits(KEYSTONE, PathInfo("/d", changed, uid, gid), wanted) == permits(
            KEYSTONE, PathInfo("/d", mode, uid, gid), wanted
        )
    selected = (mode >> shift) & 0o7
    assert permits(KEYSTONE, PathInfo("/d", mode, uid, gid), wanted) == (
        selected & wanted == wanted
    )


def test_access_problem_names_the_owner_and_the_first_directory_it_cannot_pass() -> None:
    top = PathInfo("/etc/keystone", 0o755, 0, 0)
    repo = PathInfo("/etc/keystone/fernet-keys", 0o700, 0, 0)
    key = PathInfo("/etc/keystone/fernet-keys/0", 0o600, 998, 997)
    assert access_problem(KEYSTONE, [(top, EXECUTE), (repo, RX)], [key]) == (
        "keystone (uid 998) cannot list /etc/keystone/fernet-keys (0:0 0700)"
    )
    assert access_problem(User(998), [(repo, EXECUTE)], []) == (
        "uid 998 cannot enter /etc/keystone/fernet-keys (0:0 0700)"
    )
    unreadable = PathInfo("/k/1", 0o600, 0, 997)
    assert access_problem(KEYSTONE, [(top, EXECUTE)], [key, unreadable]) == (
        "keystone (uid 998) cannot read /k/1 (0:997 0600)"
    )
    assert access_problem(KEYSTONE, [(top, EXECUTE)], [key]) is None
    assert access_problem(None, [(repo, RX)], [unreadable]) is None, "no owner: no check"


@pytest.mark.parametrize(
    ("mode", "safe"),
    [
        (0o700, True),
        (0o750, True),
        (0o710, True),
        (0o2750, True),
        (0o770, False),
        (0o755, False),
        (0o701, False),
        (0o500, False),
        (0o600, False),
    ],
)
def test_safe_directory_modes(mode: int, safe: bool) -> None:
    assert safe_directory(mode) is safe


@pytest.mark.parametrize(
    ("uid", "gid", "mode", "user", "problem"),
    [
        (0, 997, 0o750, KEYSTONE, None),  # keystone works there: left alone
        (998, 0, 0o700, KEYSTONE, None),
        (0, 997, 0o755, KEYSTONE, "mode"),  # others may list it
        (0, 0, 0o700, KEYSTONE, "keystone (uid 998) cannot list /d (0:0 0700)"),
        (0, 997, 0o710, KEYSTONE, "keystone (uid 998) cannot list /d (0:997 0710)"),
        (0, 0, 0o700, None, None),  # no owner configured: the mode alone
        (0, 0, 0o750, None, None),
        (0, 0, 0o755, None, "mode"),
    ],
)
def test_directory_problem(
    uid: int, gid: int, mode: int, user: User | None, problem: str | None
) -> None:
    assert directory_problem(PathInfo("/d", mode, uid, gid), user, RX) == problem


# --- the plans -------------------------------------------------------------------------------

DIGEST = "d" * 64
OWNER = Ownership(998, 997, "keystone")


def fernet_node(uid: int, gid: int, mode: int, key_uid: int = 998) -> NodeView:
    key = Entry("0", EntryType.FILE, 0o600, 44, key_uid, 997, digest=DIGEST)
    return NodeView(mode, (key,), (), PathInfo("/keys", mode, uid, gid))


def test_a_fernet_directory_keystone_can_use_is_in_sync_and_left_alone() -> None:
    plan = diff({0: DIGEST}, fernet_node(0, 997, 0o750), OWNER)
    assert plan.in_sync and not plan.fix_directory and plan.changes() == {}


def test_a_fernet_directory_keystone_cannot_list_is_reported_and_fixed() -> None:
    plan = diff({0: DIGEST}, fernet_node(0, 0, 0o700), OWNER)
    assert not plan.in_sync and plan.fix_directory
    assert plan.changes() == {"access": ["keystone (uid 998) cannot list /keys (0:0 0700)"]}
    assert diff({0: DIGEST}, fernet_node(0, 0, 0o700), Ownership()).in_sync, "no owner"


def test_a_fernet_key_keystone_cannot_read_is_named() -> None:
    plan = diff({0: DIGEST}, fernet_node(998, 997, 0o700, key_uid=0), OWNER)
    assert plan.replace == (0,) and not plan.fix_directory
    assert plan.changes()["access"] == ["keystone (uid 998) cannot read /keys/0 (0:997 0600)"]


def jws_node(public: PathInfo, private: PathInfo) -> JwsView:
    key = Entry("private.pem", EntryType.FILE, 0o600, 200, 998, 997, digest=DIGEST)
    pub = Entry("a.pem", EntryType.FILE, 0o600, 100, 998, 997, digest="a" * 64)
    return JwsView(public.mode, (pub,), private.mode, key, (), public, private)


JWS_EXPECTED = JwsExpected({"a.pem": "a" * 64}, DIGEST)


def test_jws_directories_keystone_can_use_are_in_sync_and_left_alone() -> None:
    view = jws_node(PathInfo("/p", 0o750, 0, 997), PathInfo("/k", 0o710, 0, 997))
    plan = diff_jws(JWS_EXPECTED, view, 998, KEYSTONE)
    assert plan.in_sync and plan.fix_modes == () and plan.changes() == {}


def test_jws_directories_keystone_cannot_use_are_reported_and_fixed() -> None:
    view = jws_node(PathInfo("/p", 0o750, 0, 0), PathInfo("/k", 0o700, 0, 0))
    plan = diff_jws(JWS_EXPECTED, view, 998, KEYSTONE)
    assert not plan.in_sync and plan.fix_modes == ("private", "public")
    assert plan.changes()["directories"] == [
        "private: keystone (uid 998) cannot enter /k (0:0 0700)",
        "public: keystone (uid 998) cannot list /p (0:0 0750)",
    ]
    assert diff_jws(JWS_EXPECTED, view, 998).in_sync, "no owner to check against"
