"""A node's plan names a revoked key it holds again (issue 22: repaired and reported, never a
divergence), but never the key a revocation is taking out while the controller still has it."""

from __future__ import annotations

from keysyncd.core.changewords import describe_changes
from keysyncd.core.keyring import digest_of
from keysyncd.core.nodeplan import NodeView, diff
from keysyncd.core.view import Entry, EntryType, with_content
from tests.unit.test_keystone_view import EXPECTED, KEYS, KIND, expected_file

LEAKED = KEYS[0]  # in no EXPECTED slot: a key the controller revoked and no longer has


def node_with(name: str, key: bytes) -> NodeView:
    planted = with_content(Entry(name, EntryType.FILE, 0o600, 44), key, KIND.problem)
    return NodeView(0o700, (*(expected_file(i) for i in EXPECTED if str(i) != name), planted))


def test_a_revoked_key_above_the_primary_is_removed_and_named() -> None:
    plan = diff(EXPECTED, node_with("9", LEAKED), revoked={digest_of(LEAKED)})
    assert plan.diverged is None and plan.delete == ("9",)
    assert plan.changes() == {"extra": [9], "revoked": [9]}
    assert describe_changes(plan.changes()) == "extra key 9, revoked, held again: key 9"
    assert describe_changes(plan.changes(), done=True) == "removed key 9, removed revoked key 9"


def test_a_revoked_key_at_an_expected_index_is_replaced_and_named() -> None:
    plan = diff(EXPECTED, node_with("1", LEAKED), revoked={digest_of(LEAKED)})
    assert plan.diverged is None and plan.replace == (1,)
    assert plan.changes() == {"changed": [1], "revoked": [1]}


def test_the_key_being_revoked_while_the_controller_holds_it_is_not_held_again() -> None:
    """During a revocation the controller still has the key until it is deleted: a node holding
    it as expected is in sync, not a key come back."""
    plan = diff(EXPECTED, NodeView(0o700, tuple(expected_file(i) for i in EXPECTED)),
                revoked={EXPECTED[2]})  # fmt: skip
    assert plan.in_sync and "revoked" not in plan.changes()


def test_without_the_revoked_digests_the_same_node_is_diverged() -> None:
    assert diff(EXPECTED, node_with("9", LEAKED)).diverged is not None
