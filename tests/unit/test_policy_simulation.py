"""``plan``'s simulation (core/policy.simulate) against lifecycles worked out by hand.

Start: key 1 secondary (demoted and confirmed at 0), key 2 primary since 0 (made at -10),
key 0 staged at 0; max_active_keys 3, token_expiration 100. Each rotation retires the
lowest secondary beyond three keys only once ``confirmed_at + retention`` has passed, and
in the simulation a demotion is confirmed at its rotation (a healthy fleet).
"""

from __future__ import annotations

import pytest

from keysyncd.core.policy import KeyHistory, Lifecycle, Policy, simulate

HISTORY = {
    0: KeyHistory(created_at=0.0),
    1: KeyHistory(demoted_at=0.0, confirmed_at=0.0),
    2: KeyHistory(created_at=-10.0, promoted_at=0.0),
}


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (
            0,  # retention 100: key 1 goes at 100, key 2 at 200, key 3 (confirmed 200) stays
            [
                Lifecycle(1, None, None, 0.0, 100.0),
                Lifecycle(2, -10.0, 0.0, 100.0, 200.0),
                Lifecycle(3, 0.0, 100.0, 200.0, None),
                Lifecycle(4, 100.0, 200.0, 250.0, None),
                Lifecycle(5, 200.0, 250.0, None, None),
                Lifecycle(0, 250.0, None, None, None),
            ],
        ),
        (
            50,  # retention 150: key 1 kept at 100 (safe at 150), goes at 200; key 2 at 250
            [
                Lifecycle(1, None, None, 0.0, 200.0),
                Lifecycle(2, -10.0, 0.0, 100.0, 250.0),
                Lifecycle(3, 0.0, 100.0, 200.0, None),
                Lifecycle(4, 100.0, 200.0, 250.0, None),
                Lifecycle(5, 200.0, 250.0, None, None),
                Lifecycle(0, 250.0, None, None, None),
            ],
        ),
    ],
)
def test_simulated_lifecycles_match_the_hand_worked_ones(
    window: int, expected: list[Lifecycle]
) -> None:
    policy = Policy(max_active_keys=3, token_expiration=100, allow_expired_window=window)
    assert simulate({0, 1, 2}, HISTORY, policy, [100.0, 200.0, 250.0]) == expected


def test_without_rotations_the_simulation_shows_the_present() -> None:
    policy = Policy(max_active_keys=3, token_expiration=100, allow_expired_window=0)
    assert simulate({0, 1, 2}, HISTORY, policy, []) == [
        Lifecycle(1, None, None, 0.0, None),
        Lifecycle(2, -10.0, 0.0, None, None),
        Lifecycle(0, 0.0, None, None, None),
    ]


def test_an_unconfirmed_demotion_is_confirmed_by_the_next_rotation_not_before() -> None:
    history = {**HISTORY, 1: KeyHistory(demoted_at=0.0)}  # demoted, never verified
    policy = Policy(max_active_keys=3, token_expiration=100, allow_expired_window=0)
    lifecycles = simulate({0, 1, 2}, history, policy, [100.0, 200.0])
    # at 100 key 1 has no confirmation: kept; the verified push at 100 confirms it and the
    # demotion of key 2: both are safe at 200, and both are beyond the three kept keys
    assert lifecycles[:2] == [
        Lifecycle(1, None, None, 0.0, 200.0),
        Lifecycle(2, -10.0, 0.0, 100.0, 200.0),
    ]


def test_keys_without_history_are_simulated_from_their_next_event() -> None:
    """Adopted keys may have no history at all: their past is unknown (None), not an error."""
    policy = Policy(max_active_keys=3, token_expiration=100, allow_expired_window=0)
    assert simulate({0, 1}, {}, policy, [100.0]) == [
        Lifecycle(1, None, None, 100.0, None),
        Lifecycle(2, None, 100.0, None, None),
        Lifecycle(0, 100.0, None, None, None),
    ]
