"""The JWS journal's transitions (core/jws.py), each compared with the whole state it must
give: new pairs, installation, retirement, removed nodes, serials and adopted names."""

from __future__ import annotations

import pytest

from keysyncd.core import jws
from keysyncd.core.jws import JwsState, Pair, Retiring


def pair(node: str, serial: int, at: float = 0.0) -> Pair:
    return Pair(
        node, serial, jws.public_name(node, serial), f"pub-{node}{serial}", f"k{serial}", at
    )


A1, A2, B1, B2 = pair("a", 1), pair("a", 2), pair("b", 1), pair("b", 2)
SIGNING = JwsState(signing={"a": A1, "b": B1}, serials={"a": 1, "b": 1})


def test_public_names_say_node_and_serial() -> None:
    assert jws.public_name("ctl1", 7) == "ctl1-7.pem"


def test_new_pairs_wait_beside_the_signing_ones() -> None:
    state = jws.with_next(SIGNING, [A2, B2])
    assert state == JwsState(
        signing={"a": A1, "b": B1}, next={"a": A2, "b": B2}, serials={"a": 2, "b": 2}
    )
    assert state.public_keys() == {
        "a-1.pem": "pub-a1",
        "a-2.pem": "pub-a2",
        "b-1.pem": "pub-b1",
        "b-2.pem": "pub-b2",
    }
    assert list(state.public_keys()) == sorted(state.public_keys())
    assert state.private_digest("a") == "k1" and state.private_digest("c") is None


def test_a_serial_never_goes_down() -> None:
    state = jws.with_next(JwsState(serials={"a": 5}), [A2])
    assert state.serials == {"a": 5}


def test_a_name_in_use_is_refused() -> None:
    with pytest.raises(ValueError, match=r"a-1\.pem is already in use"):
        jws.with_next(SIGNING, [A1])
    with pytest.raises(ValueError, match=r"a-2\.pem is already in use"):
        jws.with_next(JwsState(), [A2, Pair("x", 2, "a-2.pem", "d", "p", 0.0)])


def test_next_serial_skips_every_name_in_use() -> None:
    assert jws.next_serial(JwsState(), "a") == 1
    assert jws.next_serial(SIGNING, "a") == 2
    assert jws.next_serial(SIGNING, "a", taken=["a-2.pem", "a-3.pem"]) == 4
    retiring = JwsState(serials={"a": 1}, retiring={"a-2.pem": Retiring("a", "d", None)})
    assert jws.next_serial(retiring, "a") == 3
    assert jws.next_serial(JwsState(serials={"a": 9}), "a", taken=["a-1.pem"]) == 10


def test_adopted_names_give_the_highest_serial_per_configured_node() -> None:
    names = [
        "a-1.pem",
        "a-12.pem",
        "a-3.pem",
        "b-2.pem",
        "c-5.pem",  # not a configured node
        "a-x.pem",  # no serial
        "a-1234567890.pem",  # too long to be one of ours
        "b-7.key",  # not .pem
        "a-b-4.pem",  # node "a-b" is not configured
        "public.pem",
    ]
    assert jws.adopted_serials(names, {"a", "b"}) == {"a": 12, "b": 2}
    assert jws.adopted_serials(["a-b-4.pem"], {"a-b"}) == {"a-b": 4}
    assert jws.adopted_serials(["a-123456789.pem"], {"a"}) == {"a": 123456789}
    assert jws.adopted_serials([], {"a"}) == {}


def test_pairs_are_needed_by_every_node_for_a_rotation_and_by_new_nodes_otherwise() -> None:
    state = jws.with_next(SIGNING, [A2])
    assert jws.needing_pairs(state, ["c", "b", "a"], rotate=True) == ["b", "c"]
    assert jws.needing_pairs(state, ["c", "b", "a"], rotate=False) == ["c"]
    assert jws.needing_pairs(JwsState(next={"c": pair("c", 1)}), ["c", "d"], False) == ["d"]


def test_an_installed_pair_signs_and_the_old_public_key_starts_its_clock() -> None:
    state = jws.installed(jws.with_next(SIGNING, [A2, B2]), "a", 100.0)
    assert state == JwsState(
        signing={"a": A2, "b": B1},
        next={"b": B2},
        retiring={"a-1.pem": Retiring("a", "pub-a1", 100.0)},
        serials={"a": 2, "b": 2},
    )


def test_the_first_pair_of_a_node_retires_nothing() -> None:
    state = jws.installed(jws.with_next(JwsState(), [A1]), "a", 5.0)
    assert state == JwsState(signing={"a": A1}, serials={"a": 1})


def test_a_shared_key_is_timed_from_the_last_node_to_stop_signing_with_it() -> None:
    shared = Pair("a", 1, "shared.pem", "pub-shared", "k", 0.0)
    state = JwsState(signing={"a": shared, "b": shared})
    state = jws.with_next(state, [A2, B2])
    state = jws.installed(state, "a", 100.0)
    assert state.retiring == {"shared.pem": Retiring("a", "pub-shared", 100.0)}
    state = jws.installed(state, "b", 250.0)
    assert state.retiring == {"shared.pem": Retiring("b", "pub-shared", 250.0)}
    earlier = JwsState(
        signing={"b": Pair("b", 1, "shared.pem", "pub-shared", "k", 0.0)},
        next={"b": B2},
        retiring={"shared.pem": Retiring("a", "pub-shared", 300.0)},
    )
    assert jws.installed(earlier, "b", 250.0).retiring["shared.pem"].stopped_at == 300.0
    unconfirmed = JwsState(
        signing={"b": Pair("b", 1, "shared.pem", "pub-shared", "k", 0.0)},
        next={"b": B2},
        retiring={"shared.pem": Retiring("a", "pub-shared", None)},
    )
    assert jws.installed(unconfirmed, "b", 250.0).retiring["shared.pem"].stopped_at == 250.0


def test_old_public_keys_go_after_the_retention_unless_in_use() -> None:
    state = JwsState(
        signing={"a": A2},
        next={"b": B2},
        retiring={
            "a-1.pem": Retiring("a", "pub-a1", 100.0),  # safe at 110
            "b-1.pem": Retiring("b", "pub-b1", None),  # not confirmed
            "b-2.pem": Retiring("b", "pub-b2", 0.0),  # b's next pair: in use
            "old.pem": Retiring("c", "pub-a2", 0.0),  # a's signing key under another name
            "c-1.pem": Retiring("c", "pub-c1", 105.0),  # safe at 115
        },
    )
    assert jws.plan_retirement(state, 10.0, 109.9) == jws.Retirement(
        (),
        (
            ("a-1.pem", 110.0),
            ("b-1.pem", None),
            ("b-2.pem", None),
            ("c-1.pem", 115.0),
            ("old.pem", None),
        ),
    )
    assert jws.plan_retirement(state, 10.0, 110.0) == jws.Retirement(
        ("a-1.pem",), (("b-1.pem", None), ("b-2.pem", None), ("c-1.pem", 115.0), ("old.pem", None))
    )
    assert jws.plan_retirement(state, 10.0, 115.0).retire == ("a-1.pem", "c-1.pem")
    after = jws.without(state, ["a-1.pem", "c-1.pem"])
    assert set(after.retiring) == {"b-1.pem", "b-2.pem", "old.pem"}
    assert after.signing == state.signing and after.next == state.next


def test_a_removed_node_keeps_its_public_key_for_the_retention_and_loses_its_next_pair() -> None:
    state = jws.with_next(SIGNING, [B2])
    assert jws.removed_nodes(state, {"a", "b"}, 50.0) is state
    gone = jws.removed_nodes(state, {"a"}, 50.0)
    assert gone == JwsState(
        signing={"a": A1},
        retiring={"b-1.pem": Retiring("b", "pub-b1", 50.0)},
        serials={"a": 1, "b": 2},
    )
    waiting_only = JwsState(signing={"a": A1}, next={"c": pair("c", 1)})
    assert jws.removed_nodes(waiting_only, {"a"}, 50.0) == JwsState(signing={"a": A1})


def test_lost_waiting_pairs_are_dropped() -> None:
    state = jws.with_next(SIGNING, [A2, B2])
    assert jws.dropped(state, ["a"]) == JwsState(
        signing={"a": A1, "b": B1}, next={"b": B2}, serials={"a": 2, "b": 2}
    )
