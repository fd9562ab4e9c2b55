"""Revocation of JWS key pairs (``keysyncd revoke --repo R --node NODE | --all``), pure: the
public keys a node signs with now (what is revoked), the plan of the run (a JWS converge with a
new pair for each revoked node), and the journal without the revoked keys. No IO.

The order is the rotation's, then one step more: the new public key on every node (phase 1),
the gate, the node's new private key (phase 2), and only then its old public key removed from
every node at once, without the retention wait (``forget``). A node still signing with a
revoked key keeps it (its tokens would be rejected everywhere), unless forced.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from types import MappingProxyType

from keysyncd.core import jws as model
from keysyncd.core.jwsconverge import ConvergePlan


def signing_keys(pairs: model.JwsState, nodes: Collection[str]) -> dict[str, str]:
    """Return node -> the digest of the public key it signs with now, for each of ``nodes``
    that has one (``{"node1": "ab12..."}``)."""
    signing = pairs.signing
    return {node: signing[node].public_digest for node in sorted(nodes) if node in signing}


def with_new_pairs(plan: ConvergePlan, nodes: Collection[str]) -> ConvergePlan:
    """Return ``plan`` giving each of ``nodes`` a new pair, unless one already waits for it
    (made by an earlier run: it never left the controller's store but for its public key)."""
    waiting = plan.pairs.next
    new = sorted({*plan.new, *(node for node in nodes if node not in waiting)})
    return replace(plan, new=tuple(new), rekey=tuple(n for n in plan.rekey if n not in new))


def still_signing(pairs: model.JwsState, revoked: Collection[str]) -> list[str]:
    """Return the nodes that still sign with a ``revoked`` public key (digest)."""
    return sorted(node for node, pair in pairs.signing.items() if pair.public_digest in revoked)


def revoked_names(pairs: model.JwsState, revoked: Collection[str]) -> tuple[str, ...]:
    """Return the file names of the journal's public keys whose digest is ``revoked``."""
    return tuple(name for name, digest in pairs.public_keys().items() if digest in revoked)


def forget(pairs: model.JwsState, revoked: Collection[str]) -> model.JwsState:
    """Return ``pairs`` without the ``revoked`` public keys: old keys kept for tokens go at once
    (no retention), and a node still signing with one (forced) signs with nothing the journal
    knows until its waiting pair is installed (its private.pem is left as it is)."""
    retiring = {n: k for n, k in pairs.retiring.items() if k.digest not in revoked}
    signing = {n: p for n, p in pairs.signing.items() if p.public_digest not in revoked}
    return replace(pairs, retiring=MappingProxyType(retiring), signing=MappingProxyType(signing))


def dies(nodes: Collection[str], every: bool) -> str:
    """Return what revoking the pairs of ``nodes`` kills, in words."""
    if every:
        return (
            "revoking every node's key pair: every JWS token dies (each node gets a new pair; "
            "every public key, current or kept for older tokens, leaves every node at once)"
        )
    return (
        f"revoking the key pair of {', '.join(sorted(nodes))}: every token signed with its "
        "current private key is rejected on every node once its public key is gone; tokens "
        "signed by every other node stay valid"
    )
