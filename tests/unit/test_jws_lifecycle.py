"""``plan`` for ``jws``: the lifecycle simulation runs the model's own decisions
(``keysyncd.core.jwsconverge``): every rotation gives each node a new pair that signs at once, the
old public key retires at the first rotation ``retention`` after it was replaced, a pair
waiting to be installed is installed (not replaced) by the next rotation, and an old key
whose node was never verified switching stays."""

from __future__ import annotations

from keysyncd.core import jwsconverge as jwslife
from keysyncd.core.jws import JwsState, Pair, Retiring

DAY = 86400.0


def pair(node: str, serial: int, at: float) -> Pair:
    return Pair(node, serial, f"{node}-{serial}.pem", f"pub {node}{serial}", "priv", at)


def test_each_rotation_makes_a_pair_and_old_keys_retire_after_the_retention() -> None:
    state = JwsState(signing={"a": pair("a", 1, 0.0)}, serials={"a": 1})
    lives = jwslife.simulate(state, ["a"], 1.5 * DAY, 10.0, [DAY, 2 * DAY, 3 * DAY, 4 * DAY])
    assert [(life.key, life.signing_at, life.replaced_at, life.retired_at) for life in lives] == [
        ("a-1.pem", 10.0, DAY, 3 * DAY),
        ("a-2.pem", DAY, 2 * DAY, 4 * DAY),
        ("a-3.pem", 2 * DAY, 3 * DAY, None),
        ("a-4.pem", 3 * DAY, 4 * DAY, None),
        ("a-5.pem", 4 * DAY, None, None),
    ]


def test_a_waiting_pair_is_installed_by_the_next_rotation_and_old_keys_come_first() -> None:
    state = JwsState(
        signing={"a": pair("a", 2, 0.0)},
        next={"a": pair("a", 3, 5.0)},
        retiring={
            "a-1.pem": Retiring("a", "pub a1", 1.0),
            "gone.pem": Retiring("a", "pub gone", None),  # never confirmed: it stays
        },
        serials={"a": 3},
    )
    lives = jwslife.simulate(state, ["a"], 100.0, 10.0, [DAY])
    assert [(life.key, life.staged_at, life.signing_at, life.retired_at) for life in lives] == [
        ("gone.pem", None, None, None),
        ("a-1.pem", None, None, DAY),
        ("a-2.pem", 0.0, 10.0, None),
        ("a-3.pem", 5.0, DAY, None),
    ]
    assert lives[2].replaced_at == DAY and lives[3].replaced_at is None
