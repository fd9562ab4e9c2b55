"""What ``plan`` shows for a ``jws`` repository: each key pair's future. Pure: the decisions a
real rotation makes (``keysyncd.core.jws``), on a healthy fleet (each new pair installed in
the rotation that makes it).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from keysyncd.core import jws
from keysyncd.core.jws import JwsState, Pair


@dataclass(frozen=True)
class PairLifecycle:
    """One key pair's future: its node, its public key's file name, when it was or will be made,
    when its node signs with it (``now`` if it does), is replaced and leaves every node (None:
    later than the rotations shown)."""

    node: str
    key: str
    staged_at: float | None
    signing_at: float | None
    replaced_at: float | None
    retired_at: float | None


def simulate(
    state: JwsState, nodes: Collection[str], retention: float, now: float, rotations: list[float]
) -> list[PairLifecycle]:
    """Return every pair's lifecycle over the rotations at ``rotations`` (ascending):
    ``retention`` is token_expiration + allow_expired_window."""
    events: dict[str, dict[str, float | str | None]] = {}
    for name, key in state.retiring.items():
        events[name] = {"node": key.node, "replaced": key.stopped_at}
    for signs, group in ((True, state.signing), (False, state.next)):
        for node, pair in group.items():
            events[pair.public] = {"node": node, "staged": pair.created_at}
            events[pair.public]["signing"] = now if signs else None
    current = jws.removed_nodes(state, nodes, now)
    for at in rotations:
        due = jws.plan_retirement(current, retention, at)
        current = jws.without(current, due.retire)
        for name in due.retire:
            events[name]["retired"] = at
        new = jws.needing_pairs(current, nodes, rotate=True)
        current = jws.with_next(current, [_planned(current, node, at) for node in new])
        for node, pair in sorted(current.next.items()):
            old = current.signing.get(node)
            if old is not None:
                events[old.public]["replaced"] = at
            events.setdefault(pair.public, {"node": node, "staged": at})["signing"] = at
            current = jws.installed(current, node, at)
    return sorted((_lifecycle(name, found) for name, found in events.items()), key=_order)


def _planned(state: JwsState, node: str, at: float) -> Pair:
    """Return the pair a rotation at ``at`` would make for ``node`` (digests stand-ins)."""
    serial = jws.next_serial(state, node)
    name = jws.public_name(node, serial)
    return Pair(node, serial, name, f"planned {name}", f"planned private {name}", at)


def _lifecycle(name: str, found: dict[str, float | str | None]) -> PairLifecycle:
    times = {key: value for key, value in found.items() if not isinstance(value, str)}
    stages = ("staged", "signing", "replaced", "retired")
    return PairLifecycle(str(found["node"]), name, *(times.get(stage) for stage in stages))


def _order(life: PairLifecycle) -> tuple[str, bool, float, str]:
    """Node by node, oldest pair first: the old public keys the journal keeps (made before
    any pair it knows) by when they were replaced, then the pairs by when they were made."""
    made = life.staged_at is not None
    return life.node, made, (life.staged_at if made else life.replaced_at) or 0.0, life.key
