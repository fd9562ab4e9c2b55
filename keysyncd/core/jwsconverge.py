"""The plan of one JWS write action (init, sync, rotate, drift repair), made once. Pure:
``plan_converge`` is the one planner the dry run shows, the real run executes and its report
records (``details.plan``), from the same inputs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from keysyncd.core import jws as model
from keysyncd.core.jws import JwsState, Pair
from keysyncd.core.jwsplan import WRONG_MODE


@dataclass(frozen=True)
class ConvergeRequest:
    """What the run was asked and knows: ``rotate`` (a new pair for every node), ``init``,
    ``operator`` (asked now: only then does a change of algorithm go through), ``trusted`` (an
    untrusted clock rotates and retires nothing), ``retention`` (seconds an old key stays)."""

    nodes: tuple[str, ...]
    configured: str  # the configured algorithm
    rotate: bool = False
    init: bool = False
    operator: bool = False
    trusted: bool = True
    retention: float = 0.0
    now: float = 0.0


@dataclass(frozen=True)
class ConvergePlan:
    """The plan: ``pairs`` is the journal's JWS part once it is carried out (before the new
    pairs are made); the rest is what reports, hooks and dry runs show (``to_json``)."""

    pairs: model.JwsState
    rotating: bool
    algorithm: str  # of the pairs made in this run
    former: str  # the former algorithm of the journal's keys ("": none)
    migrating: bool  # this run gives every node a pair of the configured one
    removed: tuple[str, ...]  # nodes no longer configured: their keys start retiring
    retire: tuple[str, ...]  # public keys no token can need any more
    dropped_waiting: tuple[str, ...]  # nodes whose waiting pair of the former one goes
    new: tuple[str, ...]  # nodes that get a new pair (a rotation, an init, a node added)
    rekey: tuple[str, ...]  # nodes whose private.pem is not keysyncd's: a new pair
    exposed: tuple[str, ...]  # of rekey: the right key, but open to others (mode, owner)

    def to_json(self) -> dict[str, Any]:
        """Return the plan as reports, hooks and dry runs show it."""
        return {
            "rotate": self.rotating,
            "algorithm": self.algorithm,
            "former_algorithm": self.former or None,
            "migrating": self.migrating,
            "removed_nodes": list(self.removed),
            "retired": list(self.retire),
            "dropped_waiting": list(self.dropped_waiting),
            "new_pairs": list(self.new),
            "rekey": list(self.rekey),
            "exposed": list(self.exposed),
        }


def plan_converge(
    pairs: model.JwsState,
    algorithms: Mapping[str, str],
    request: ConvergeRequest,
    private_problems: Mapping[str, str | None],
) -> ConvergePlan:
    """Return the plan of one run from the journal's ``pairs``, the store's ``algorithms`` (name ->
    algorithm) and each node's private.pem problem as read (None: it is the journal's)."""
    pairs, removed, retire = retirement(pairs, request)
    rotating = request.rotate and request.trusted  # an untrusted clock rotates nothing
    former = model.former_algorithms(pairs, algorithms, request.configured)
    algorithm, waiting = _algorithm(pairs, algorithms, request, rotating, former)
    pairs = model.dropped(pairs, waiting)  # never installed: never used
    new = model.needing_pairs(pairs, request.nodes, rotating or request.init)
    # a private.pem that is not ours gets a new pair (no repair)
    rekey = sorted(
        node
        for node, problem in private_problems.items()
        if problem and node not in pairs.next and node not in new
    )
    exposed = [node for node in rekey if (private_problems[node] or "").startswith(WRONG_MODE)]
    migrating = bool(former) and rotating and request.operator
    return ConvergePlan(
        pairs, rotating, algorithm, former, migrating, removed, retire, tuple(waiting),
        tuple(new), tuple(rekey), tuple(exposed),
    )  # fmt: skip


def retirement(
    pairs: model.JwsState, request: ConvergeRequest
) -> tuple[model.JwsState, tuple[str, ...], tuple[str, ...]]:
    """Return (the pairs without the retired keys and removed nodes, those nodes, the retired
    keys); an untrusted clock retires and times nothing (a removed node's key waits)."""
    if not request.trusted:
        return pairs, (), ()
    removed = tuple(sorted(n for n in {*pairs.signing, *pairs.next} if n not in request.nodes))
    pairs = model.removed_nodes(pairs, request.nodes, request.now)
    due = model.plan_retirement(pairs, request.retention, request.now)
    return model.without(pairs, due.retire), removed, due.retire


def _algorithm(
    pairs: model.JwsState,
    algorithms: Mapping[str, str],
    request: ConvergeRequest,
    rotating: bool,
    former: str,
) -> tuple[str, list[str]]:
    """Return (the algorithm of the pairs made in this run, the nodes whose waiting pair of the
    former algorithm goes). After a change of algorithm nodes keep the former one until a
    rotation an operator asks for (a scheduled one keeps it), which makes every pair anew;
    outside it a new pair is of the algorithm the nodes sign with (see keysyncd.core.jws)."""
    configured = request.configured
    if not former:
        return configured, []
    if rotating and request.operator:
        stale = set(model.stale_keys(pairs, algorithms, configured))
        return configured, sorted(n for n, pair in pairs.next.items() if pair.public in stale)
    found = {algorithms.get(p.public, configured) for p in pairs.signing.values()}
    return (found.pop() if len(found) == 1 else configured), []


# --- what ``plan`` shows: each pair's future, from the decisions a real rotation makes, on a
# healthy fleet (each new pair installed in the rotation that makes it)


@dataclass(frozen=True)
class PairLifecycle:
    """One key pair's future: node, public key name, and when it is made, signs (``now``: already),
    is replaced, and leaves every node (None: later than the rotations shown)."""

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
    current = model.removed_nodes(state, nodes, now)
    for at in rotations:
        due = model.plan_retirement(current, retention, at)
        current = model.without(current, due.retire)
        for name in due.retire:
            events[name]["retired"] = at
        new = model.needing_pairs(current, nodes, rotate=True)
        current = model.with_next(current, [_planned(current, node, at) for node in new])
        for node, pair in sorted(current.next.items()):
            old = current.signing.get(node)
            if old is not None:
                events[old.public]["replaced"] = at
            events.setdefault(pair.public, {"node": node, "staged": at})["signing"] = at
            current = model.installed(current, node, at)
    return sorted((_lifecycle(name, found) for name, found in events.items()), key=_order)


def _planned(state: JwsState, node: str, at: float) -> Pair:
    """Return the pair a rotation at ``at`` would make for ``node`` (digests stand-ins)."""
    serial = model.next_serial(state, node)
    name = model.public_name(node, serial)
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
