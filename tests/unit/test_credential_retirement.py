"""Credential keys retire by migration, never by time (issue 19, item 1): the pure rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keysyncd.config.load import parse_config
from keysyncd.core import journal
from keysyncd.core.journal import HookBlock, RepositoryState
from keysyncd.core.policy import (
    MIGRATION_PENDING,
    KeyHistory,
    Policy,
    plan_retirement,
    plan_rotation,
    simulate,
)
from keysyncd.errors import ConfigError

CREDENTIAL = Policy(3, 1, 0, "migration")
TOKENS = Policy(3, 1, 0, "time")
LONG_AGO = {
    1: KeyHistory(created_at=0, promoted_at=0, demoted_at=1, confirmed_at=1),
    2: KeyHistory(created_at=0, promoted_at=1, demoted_at=2, confirmed_at=2),
    3: KeyHistory(created_at=1, promoted_at=2),
}


def test_time_alone_never_retires_a_credential_key() -> None:
    # every token lifetime is long past: keys retire by time, never credential keys
    assert plan_retirement({0, 1, 2, 3}, LONG_AGO, TOKENS, 1e9).retire == (1,)
    kept = plan_retirement({0, 1, 2, 3}, LONG_AGO, CREDENTIAL, 1e9)
    assert kept.retire == ()
    assert [(k.index, k.reason) for k in kept.keep] == [(1, MIGRATION_PENDING)]


def test_a_migration_to_a_newer_primary_retires_the_keys_below_it() -> None:
    history = {**LONG_AGO, 2: KeyHistory(promoted_at=1, demoted_at=2, migrated_at=1.5)}
    assert plan_retirement({0, 1, 2, 3}, history, CREDENTIAL, 3.0).retire == (1,)
    # a migration to key 1 itself says nothing about key 1's own credentials being gone
    history = {**LONG_AGO, 1: KeyHistory(promoted_at=0, demoted_at=1, migrated_at=0.5)}
    assert plan_retirement({0, 1, 2, 3}, history, CREDENTIAL, 3.0).retire == ()


@settings(max_examples=300, deadline=None)
@given(
    keys=st.sets(st.integers(1, 12), min_size=1, max_size=8),
    migrated=st.sets(st.integers(1, 12), max_size=4),
    now=st.floats(0, 1e10),
)
def test_a_credential_key_retires_only_below_a_migrated_primary(
    keys: set[int], migrated: set[int], now: float
) -> None:
    history = {i: KeyHistory(0, 0, 0, 0, migrated_at=1.0 if i in migrated else None) for i in keys}
    plan = plan_retirement({0, *keys}, history, CREDENTIAL, now)
    held_migrated = {i for i in migrated if i in keys}
    for index in plan.retire:
        assert any(newer > index for newer in held_migrated), (index, plan)


def test_a_pending_migration_retires_nothing_whatever_the_rule() -> None:
    state = RepositoryState(
        name="r",
        digests={0: "a", 2: "b", 3: "c", 1: "d"},
        history={**LONG_AGO, 2: KeyHistory(promoted_at=1, demoted_at=2, migrated_at=1.5)},
    )
    assert journal.due_retirement(state, {0, 1, 2, 3}, CREDENTIAL, 3.0).retire == (1,)
    blocked = journal.block_rotation(state, HookBlock(("migrate",), 3, 2.5))
    plan = journal.due_retirement(blocked, {0, 1, 2, 3}, CREDENTIAL, 3.0)
    assert plan.retire == () and [k.index for k in plan.keep] == [1]
    assert journal.due_retirement(blocked, {0, 1, 2, 3}, TOKENS, 1e9).retire == ()


def test_a_migration_is_recorded_on_its_primary_and_clears_the_block() -> None:
    state = RepositoryState(name="r", digests={0: "a", 1: "b", 2: "c"}, history=LONG_AGO)
    state = journal.block_rotation(state, HookBlock(("migrate",), None, 2.0, journal.NOT_RUN))
    done = journal.migrated(state, 2, 5.0)
    assert done.history[2].migrated_at == 5.0 and done.hook_block is None
    older = journal.migrated(state, 1, 5.0)  # confirming an older key leaves the block
    assert older.hook_block is not None and older.history[1].migrated_at == 5.0


def test_a_rotation_plan_of_credential_keys_keeps_the_unmigrated_secondary() -> None:
    plan = plan_rotation({0, 1, 2}, LONG_AGO, CREDENTIAL, 1e9)
    assert plan.retire == () and plan.resulting == (0, 1, 2, 3)


def test_plan_shows_credential_keys_retiring_after_their_migration() -> None:
    lifecycles = simulate({0, 1}, {}, CREDENTIAL, [10.0, 20.0, 30.0])
    retired = {c.index: c.retired_at for c in lifecycles}
    # key 1 was primary until 10, when the migration to key 2 ran; the rotation that takes
    # the set beyond three keys (20: {1, 2, 3}) retires it, as keystone's 3 keys would
    assert retired[1] == 20.0
    assert retired[2] == 30.0
    assert retired[3] is None


@pytest.mark.parametrize("size", [2, 4, 5])
def test_only_keystones_three_keys_are_accepted_for_kind_credential(size: int) -> None:
    document = {
        "repositories": [
            {"name": "c", "kind": "credential", "path": "/var/lib/c", "max_active_keys": size}
        ]
    }
    with pytest.raises(ConfigError, match="must be 3 for kind credential"):
        parse_config(document, Path("config.yaml"))


def test_a_node_verified_at_an_older_generation_does_not_hold_the_current_keys() -> None:
    """A migration may start only once every node holds the current primary: a node last
    verified at the generation before (it missed the rotation) does not count, nor does a
    node without a record (added to the config since)."""
    from keysyncd.core.journal import NodeRecord

    nodes = {
        "node1": NodeRecord(status="in_sync", generation=7),
        "node2": NodeRecord(status="updated", generation=7),
    }
    state = RepositoryState(name="r", generation=7, nodes=nodes)
    assert journal.every_node_holds(state, ["node1", "node2"])
    behind = RepositoryState(
        name="r", generation=7, nodes={**nodes, "node2": NodeRecord("in_sync", generation=6)}
    )
    assert not journal.every_node_holds(behind, ["node1", "node2"])
    assert not journal.every_node_holds(state, ["node1", "node2", "node3"])
    failed = RepositoryState(
        name="r", generation=7, nodes={**nodes, "node1": NodeRecord("failed", generation=7)}
    )
    assert not journal.every_node_holds(failed, ["node1", "node2"])


def test_a_key_lost_outside_keysyncd_is_named_unless_migrated_past() -> None:
    state = RepositoryState(
        name="r", digests={0: "a", 1: "b", 2: "c", 3: "d"}, history=dict(LONG_AGO)
    )
    assert journal.unmigrated_losses(state, {0: "x", 2: "c", 3: "d"}, CREDENTIAL) == (1,)
    assert journal.unmigrated_losses(state, {0: "a", 1: "B", 2: "c", 3: "d"}, CREDENTIAL) == (1,)
    assert journal.unmigrated_losses(state, {0: "x", 2: "c", 3: "d"}, TOKENS) == ()
    migrated = {**LONG_AGO, 2: KeyHistory(promoted_at=1, demoted_at=2, migrated_at=1.5)}
    past = RepositoryState(name="r", digests=state.digests, history=migrated)
    assert journal.unmigrated_losses(past, {0: "x", 2: "c", 3: "d"}, CREDENTIAL) == ()
