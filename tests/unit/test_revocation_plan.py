"""The pure revocation planner (keysyncd.core.revocation): which key the operator named, what
revoking it takes, which tokens die with it, and the journal's records of it."""

from __future__ import annotations

import pytest

from keysyncd.core.journal import RepositoryState
from keysyncd.core.policy import KeyHistory
from keysyncd.core.revocation import (
    GONE,
    PRIMARY,
    SECONDARY,
    STAGED,
    Revocation,
    RevokedKey,
    abandon,
    begin,
    finished,
    held_revoked,
    plan_revocation,
    seen_again,
    select,
    succeeds,
    token_span,
)
from keysyncd.errors import UsageError

DIGESTS = {0: "a" * 64, 1: "b" * 64, 2: "c" * 64}


@pytest.mark.parametrize(
    ("index", "role", "promote", "new_staged", "delete"),
    [(0, STAGED, False, True, None), (2, PRIMARY, True, False, 2), (1, SECONDARY, False, False, 1)],
)
def test_each_role_gets_its_steps(
    index: int, role: str, promote: bool, new_staged: bool, delete: int | None
) -> None:
    plan = plan_revocation(DIGESTS, DIGESTS[index], {}, "time")
    assert (plan.role, plan.index, plan.promote, plan.new_staged) == (
        role,
        index,
        promote,
        new_staged,
    )
    assert plan.delete == delete and plan.migrate is False
    assert plan.to_json()["revoke"] == DIGESTS[index]


def test_a_key_the_controller_no_longer_holds_only_cleans_the_nodes() -> None:
    plan = plan_revocation(DIGESTS, "d" * 64, {}, "migration")
    assert (plan.role, plan.index, plan.delete, plan.promote, plan.migrate) == (
        GONE, None, None, False, False,
    )  # fmt: skip


def test_credential_keys_wait_for_a_migration_past_them() -> None:
    primary = plan_revocation(DIGESTS, DIGESTS[2], {}, "migration")
    assert primary.migrate and primary.promote and primary.delete == 2
    secondary = plan_revocation(DIGESTS, DIGESTS[1], {}, "migration")
    assert secondary.migrate
    migrated = {2: KeyHistory(migrated_at=10.0)}
    assert not plan_revocation(DIGESTS, DIGESTS[1], migrated, "migration").migrate
    assert not plan_revocation(DIGESTS, DIGESTS[0], {}, "migration").migrate  # staged: nothing


def test_select_names_exactly_one_key() -> None:
    assert select(DIGESTS, "sha256:BBBB", None) == DIGESTS[1]
    assert select(DIGESTS, None, 0) == DIGESTS[0]
    assert select(DIGESTS, "dddd", None, also=["d" * 64]) == "d" * 64  # under way
    with pytest.raises(UsageError, match="no key's sha256 starts with"):
        select(DIGESTS, "eeee", None)
    with pytest.raises(UsageError, match="give more digits"):
        select({1: "abcd" + "0" * 60, 2: "abcd" + "1" * 60}, "abcd", None)
    with pytest.raises(UsageError, match="at least 4"):
        select(DIGESTS, "bb", None)
    with pytest.raises(UsageError, match="no key 7"):
        select(DIGESTS, None, 7)


def test_the_tokens_that_die_are_those_issued_while_it_was_primary() -> None:
    history = {1: KeyHistory(promoted_at=100.0, demoted_at=200.0), 2: KeyHistory(promoted_at=200.0)}
    assert token_span(history, 1, 500.0) == {"issued_from_at": 100.0, "issued_until_at": 200.0}
    assert token_span(history, 2, 500.0) == {"issued_from_at": 200.0, "issued_until_at": 500.0}
    assert token_span(history, 0, 500.0) == {"issued_from_at": None, "issued_until_at": None}
    assert token_span(history, None, 500.0) == {"issued_from_at": None, "issued_until_at": None}


def test_a_revoked_key_is_recorded_once_and_forever() -> None:
    state = RepositoryState("r")
    revocation = Revocation("b" * 64, "leak", 5.0)
    begun = begin(begin(state, revocation), revocation)
    assert begun.revoked == (RevokedKey("b" * 64, "leak", 5.0),)
    assert finished(begun).revocation is None and finished(begun).revoked == begun.revoked
    assert abandon(begun, state) == state
    assert held_revoked(DIGESTS, begun.revoked) == ((1, "b" * 64),)
    lines = seen_again({"n1": ["b" * 64], "n2": ["c" * 64]}, ["n1"], begun.revoked)
    assert lines == [f"node n1 held revoked key sha256:{'b' * 16} again: removed"]


def test_a_revocation_waiting_only_for_nodes_gives_way_to_a_second_one() -> None:
    """Its key is off the controller (revoked for good: any sync removes it from the nodes),
    so a second leaked key is not held hostage by a node that never answers."""
    first = Revocation("a" * 64, "leak", 1.0)
    assert succeeds(first, ["b" * 64], ["c" * 64, "b" * 64], "r") is None
    assert succeeds(first, ["a" * 64], ["b" * 64], "r") is first  # the same one: finish it
    assert succeeds(None, ["b" * 64], ["b" * 64], "r") is None
    assert succeeds(first, [], ["c" * 64], "r") is None  # --all: every key the controller holds


def test_a_revocation_unfinished_on_the_controller_refuses_a_second_one() -> None:
    """A credential key waiting for its migration is still on the controller: one at a time,
    whatever the second one names (a key, --all, a JWS pair)."""
    first = Revocation("a" * 64, "leak", 1.0)
    with pytest.raises(UsageError, match="is unfinished: finish it first"):
        succeeds(first, ["b" * 64], ["a" * 64, "b" * 64], "r")
    with pytest.raises(UsageError, match="is unfinished: finish it first"):
        succeeds(first, [], ["a" * 64], "r")
    jws = Revocation("a" * 64, "leak", 1.0, nodes=("node1",), more=("d" * 64,))
    with pytest.raises(UsageError, match="is unfinished: finish it first"):
        succeeds(jws, ["b" * 64], ["d" * 64], "r")  # one of its keys still in the journal
