"""A key's retention starts when EVERY node is known to hold the current generation (SPEC
safety rule 2): a node recorded in sync with an older generation does not count."""

from __future__ import annotations

from keysyncd.core.journal import NodeRecord, RepositoryState, frozen
from keysyncd.core.nodes import confirm_if_all_verified
from keysyncd.core.policy import KeyHistory

NOW = 1_800_000_000.0


def state(*generations: int) -> RepositoryState:
    """Generation 5 with key 1 demoted (unconfirmed); node N recorded in sync at generation N."""
    return RepositoryState(
        name="fernet-tokens",
        generation=5,
        history=frozen({1: KeyHistory(demoted_at=NOW - 100)}),
        nodes=frozen(
            {
                f"node{number}": NodeRecord(status="in_sync", generation=generation)
                for number, generation in enumerate(generations, start=1)
            }
        ),
    )


def test_a_node_in_sync_with_an_older_generation_holds_the_confirmation_back() -> None:
    behind = confirm_if_all_verified(state(5, 4), ["node1", "node2"], NOW)
    assert behind.history[1].confirmed_at is None


def test_every_node_at_the_current_generation_confirms_the_demotion_now() -> None:
    current = confirm_if_all_verified(state(5, 5), ["node1", "node2"], NOW)
    assert current.history[1].confirmed_at == NOW


def test_a_configured_node_without_a_record_holds_it_back() -> None:
    unknown = confirm_if_all_verified(state(5), ["node1", "node2"], NOW)
    assert unknown.history[1].confirmed_at is None
