"""What adopt may take on one node's word (SPEC safety rule 14): the pure judgement of a
source's JWS public keys, and the words it gives for what it did not take."""

from __future__ import annotations

from keysyncd.core.adoption import differing_nodes, judge_publics, refused_publics
from keysyncd.core.jwskeys import generate_pair, same_public_key

NODES = ("a", "b", "c")


def test_only_a_signers_public_half_or_a_key_every_node_holds_is_adopted() -> None:
    signer = {node: generate_pair("ES256") for node in NODES}
    old, planted, unread = (generate_pair("ES256")[1] for _ in range(3))
    offered = {f"{n}.pem": pair[1] for n, pair in signer.items()}
    offered |= {"old.pem": old, "planted.pem": planted, "unread.pem": unread}
    held = {"a": list(offered.values()), "b": [old, unread], "c": [old, planted]}
    signers = {node: pair[1] for node, pair in signer.items()}
    judged = judge_publics(offered, signers, held, NODES, same_public_key)
    assert sorted(judged.adopted) == ["a.pem", "b.pem", "c.pem", "old.pem"]
    assert dict(judged.refused) == {
        "planted.pem": "no node's private key matches it; not held by b",
        "unread.pem": "no node's private key matches it; not held by c",
    }
    without_c = {node: keys for node, keys in held.items() if node != "c"}
    judged = judge_publics({"old.pem": old}, signers, without_c, NODES, same_public_key)
    assert dict(judged.refused) == {"old.pem": "no node's private key matches it; not read: c"}


def test_what_is_not_taken_is_named_escaped_and_bounded() -> None:
    refused = {f"k{i:02}\x1b.pem": "why" for i in range(25)}
    warnings, details = refused_publics("a", refused)
    assert "\x1b" not in warnings[0] and "'k00\\x1b.pem'" in warnings[0]
    assert "25 public key files no node's" in warnings[0] and "and 20 more" in warnings[0]
    assert len(details["not_adopted"]) == 20 and details["not_adopted_unlisted"] == 5
    assert refused_publics("a", {}) == ([], {"not_adopted": []})
    lines = differing_nodes("a", {"c": {"changed": [0]}, "b": {"error": "unreachable"}})
    assert lines[0].startswith("node b could not be compared with node a (unreachable)")
    assert lines[1].startswith("node c's keys differ from node a's (different key 0)")


def test_text_around_a_real_public_key_makes_it_no_public_key_at_all() -> None:
    """cryptography skips text before a PEM block; keystone's PyJWT reads a file starting
    "ecdsa-sha2-" as an SSH key and ignores the PEM after it. A node's public half behind
    an attacker's SSH key must never be judged that node's key (nor pass as a public key)."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from keysyncd.core.jwskeys import public_problem

    _, public = generate_pair("ES256")
    evil = ec.generate_private_key(ec.SECP256R1())
    ssh = evil.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    planted = ssh + b" x\n" + public
    token = jwt.encode({"sub": "admin"}, evil, algorithm="ES256")
    assert jwt.decode(token, planted.decode(), algorithms=["ES256"])["sub"] == "admin"
    assert public_problem(planted, "ES256") is not None
    assert not same_public_key(planted, public)
    assert public_problem(public + b"\n", "ES256") is None  # whitespace around is fine
    signers = {"a": public}
    judged = judge_publics({"a.pem": planted}, signers, {"a": [planted]}, ("a",), same_public_key)
    assert judged.adopted == () or list(judged.adopted) == []
