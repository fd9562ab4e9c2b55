"""The pure part of revoking JWS key pairs (keysyncd.core.jwsrevoke): what is revoked, who
gets a new pair, and the journal without the revoked public keys."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from keysyncd.core import jws as model
from keysyncd.core.jwsconverge import ConvergeRequest, plan_converge
from keysyncd.core.jwsrevoke import (
    dies,
    forget,
    revoked_names,
    signing_keys,
    still_signing,
    with_new_pairs,
)
from keysyncd.core.revocation import Revocation, recorded


def pair(node: str, serial: int) -> model.Pair:
    name = model.public_name(node, serial)
    return model.Pair(node, serial, name, f"pub-{name}", f"priv-{name}", 1.0)


PAIRS = model.JwsState(
    signing=MappingProxyType({"node1": pair("node1", 2), "node2": pair("node2", 1)}),
    next=MappingProxyType({}),
    retiring=MappingProxyType({"node1-1.pem": model.Retiring("node1", "pub-node1-1.pem", 5.0)}),
)


def test_the_signing_public_key_of_each_named_node_is_revoked() -> None:
    assert signing_keys(PAIRS, ["node2", "node9"]) == {"node2": "pub-node2-1.pem"}


def test_a_new_pair_for_each_revoked_node_only() -> None:
    request = ConvergeRequest(("node1", "node2"), "ES256", now=10.0)
    plan = plan_converge(PAIRS, {}, request, {"node1": None, "node2": None})
    assert plan.new == ()
    assert with_new_pairs(plan, ["node2"]).new == ("node2",)
    waiting = replace(
        plan, pairs=replace(PAIRS, next=MappingProxyType({"node2": pair("node2", 2)}))
    )
    assert with_new_pairs(waiting, ["node2"]).new == ()  # the pair waiting already is used


def test_a_revoked_key_goes_at_once_but_not_from_a_node_still_signing_unless_forced() -> None:
    revoked = {"pub-node2-1.pem"}
    assert still_signing(PAIRS, revoked) == ["node2"]
    installed = model.installed(replace(PAIRS, next=MappingProxyType({"node2": pair("node2", 2)})),
                                "node2", 20.0)  # fmt: skip
    assert still_signing(installed, revoked) == []
    assert revoked_names(installed, revoked) == ("node2-1.pem",)
    left = forget(installed, revoked)
    assert "node2-1.pem" not in left.public_keys()  # no retention wait
    assert "node1-1.pem" in left.public_keys()  # another node's old key keeps its retention
    forced = forget(PAIRS, revoked)  # node2 still signing: it signs with no known key now
    assert "node2" not in forced.signing and "node2-1.pem" not in forced.public_keys()


def test_every_digest_of_a_revocation_is_recorded_once() -> None:
    record = Revocation("a" * 64, "leak", 1.0, nodes=("n1", "n2"), more=("b" * 64, "a" * 64))
    kept = recorded((), record)
    assert [key.digest for key in kept] == ["a" * 64, "b" * 64]
    assert recorded(kept, record) == kept


def test_what_dies_is_said() -> None:
    assert "every JWS token dies" in dies(["n1", "n2"], every=True)
    assert "tokens signed by every other node stay valid" in dies(["n2"], every=False)
