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
    ancestor_problem,
    ancestors,
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


# --- the directories above a repository ------------------------------------------------------


def test_ancestors_are_every_directory_above_from_the_root_down() -> None:
    assert ancestors("/etc/keystone/fernet-keys") == ("/", "/etc", "/etc/keystone")
    assert ancestors("/keys") == ("/",)
    assert ancestors("/") == ()
    assert ancestors("keys/fernet") == (), "relative: nothing known above it"


ROOT = PathInfo("/", 0o755, 0, 0)
ETC = PathInfo("/etc", 0o755, 0, 0)


@pytest.mark.parametrize(
    ("uid", "gid", "mode", "problem"),
    [
        (0, 0, 0o755, None),
        (0, 0, 0o711, None),  # enter without listing: enough to pass through
        (0, 997, 0o710, None),  # its group may enter
        (998, 0, 0o700, None),  # its own
        (0, 0, 0o700, "keystone (uid 998) cannot enter /etc/keystone (0:0 0700)"),
        (0, 0, 0o754, "keystone (uid 998) cannot enter /etc/keystone (0:0 0754)"),
        (0, 997, 0o705, "keystone (uid 998) cannot enter /etc/keystone (0:997 0705)"),
    ],
)
def test_the_owner_must_enter_every_directory_above(
    uid: int, gid: int, mode: int, problem: str | None
) -> None:
    found = [ROOT, ETC, PathInfo("/etc/keystone", mode, uid, gid)]
    assert ancestor_problem(KEYSTONE, found) == problem
    assert ancestor_problem(None, found) is None, "no owner configured: nothing to check"
    assert ancestor_problem(User(0, 0), found) is None, "root passes everywhere"


def test_the_first_directory_above_the_owner_cannot_enter_is_named() -> None:
    found = [ROOT, PathInfo("/etc", 0o700, 0, 0), PathInfo("/etc/keystone", 0o700, 0, 0)]
    assert ancestor_problem(KEYSTONE, found) == "keystone (uid 998) cannot enter /etc (0:0 0700)"
    assert ancestor_problem(KEYSTONE, []) is None


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


BLOCKED = PathInfo("/srv", 0o700, 0, 0)


def test_a_fernet_node_whose_owner_cannot_pass_above_is_not_in_sync_and_nothing_changes_above() -> (
    None
):
    view = fernet_node(0, 997, 0o750)
    blocked = NodeView(view.directory_mode, view.entries, (), view.directory, (ROOT, BLOCKED))
    plan = diff({0: DIGEST}, blocked, OWNER)
    assert not plan.in_sync
    assert plan.unreachable == "keystone (uid 998) cannot enter /srv (0:0 0700)"
    assert plan.changes() == {"access": [plan.unreachable]}
    assert (plan.add, plan.replace, plan.delete, plan.fix_directory) == ((), (), (), False)
    assert diff({0: DIGEST}, blocked, Ownership()).in_sync, "no owner: nothing to check"
    passable = PathInfo("/srv", 0o711, 0, 0)
    open_view = NodeView(view.directory_mode, view.entries, (), view.directory, (ROOT, passable))
    assert diff({0: DIGEST}, open_view, OWNER).in_sync


def test_a_fernet_node_blocked_above_still_gets_its_keys_and_its_directory_fixed() -> None:
    view = fernet_node(0, 0, 0o700)
    blocked = NodeView(view.directory_mode, (), (), view.directory, (ROOT, BLOCKED))
    plan = diff({0: DIGEST}, blocked, OWNER)
    assert plan.add == (0,) and plan.fix_directory, "what would be written anyway still is"
    assert plan.changes()["access"] == [
        "keystone (uid 998) cannot enter /srv (0:0 0700)",
        "keystone (uid 998) cannot list /keys (0:0 0700)",
    ]


def test_a_jws_node_whose_owner_cannot_pass_above_is_not_in_sync() -> None:
    view = jws_node(PathInfo("/p", 0o750, 0, 997), PathInfo("/k", 0o710, 0, 997))
    blocked = JwsView(
        view.public_mode,
        view.public,
        view.private_mode,
        view.private_key,
        (),
        view.public_info,
        view.private_info,
        (ROOT, BLOCKED),
    )
    plan = diff_jws(JWS_EXPECTED, blocked, 998, KEYSTONE)
    assert not plan.in_sync and plan.public_in_sync and plan.holds_every_public_key
    assert plan.unreachable == "keystone (uid 998) cannot enter /srv (0:0 0700)"
    assert plan.changes() == {"access": plan.unreachable}
    assert (plan.fix_modes, plan.add, plan.replace, plan.private) == ((), (), (), None)
    assert diff_jws(JWS_EXPECTED, blocked, 998).in_sync, "no owner: nothing to check"
