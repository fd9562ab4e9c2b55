"""keystone's JWS key pairs (``kind: jws``): the journal's part and every decision. Pure. Per
node: the pair it signs with (``signing``), one not yet installed (``next``), old public keys
kept for tokens it signed (``retiring``); every public directory holds all of them. A new
public key reaches every node before any node gets its private key; an old one goes a
retention after its node signs with the new one (SPEC section 9).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

ALGORITHMS = ("ES256", "ES384", "ES512", "EdDSA")  # keystone's [jwt_tokens] jws_algorithm
PRIVATE_NAME = "private.pem"


def _frozen(mapping: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Pair:
    """One node's key pair, by digests only (the controller keeps a private key only until
    its node verified it). ``public`` is the file name the public key has everywhere."""

    node: str
    serial: int
    public: str
    public_digest: str
    private_digest: str
    created_at: float


@dataclass(frozen=True)
class Retiring:
    """An old public key, kept on every node while a token its node signed may be valid;
    ``stopped_at``: when its node was verified signing a newer one (None: not yet confirmed)."""

    node: str
    digest: str
    stopped_at: float | None


@dataclass(frozen=True)
class JwsState:
    """The key pairs of one ``jws`` repository, as the journal keeps them."""

    signing: Mapping[str, Pair] = field(default_factory=_frozen)
    next: Mapping[str, Pair] = field(default_factory=_frozen)
    retiring: Mapping[str, Retiring] = field(default_factory=_frozen)
    serials: Mapping[str, int] = field(default_factory=_frozen)

    def public_keys(self) -> dict[str, str]:
        """Return what every node's public directory must hold: file name -> digest."""
        found = {pair.public: pair.public_digest for pair in self.signing.values()}
        found |= {pair.public: pair.public_digest for pair in self.next.values()}
        found |= {name: key.digest for name, key in self.retiring.items()}
        return dict(sorted(found.items()))

    def private_digest(self, node: str) -> str | None:
        """Return the digest of the private.pem ``node`` must hold now (None: none yet)."""
        pair = self.signing.get(node)
        return pair.private_digest if pair else None


def public_name(node: str, serial: int) -> str:
    """Return the file name of ``node``'s public key number ``serial`` (``ctl1-7.pem``)."""
    return f"{node}-{serial}.pem"


# --- decisions --------------------------------------------------------------------------------


def needing_pairs(state: JwsState, nodes: Collection[str], rotate: bool) -> list[str]:
    """Return the nodes that need a new pair: every node for a rotation (unless one is still
    waiting to be installed), else only those that have none at all (added to the config)."""
    if rotate:
        return sorted(node for node in nodes if node not in state.next)
    return sorted(node for node in nodes if node not in state.signing and node not in state.next)


def with_next(state: JwsState, pairs: Collection[Pair]) -> JwsState:
    """Return ``state`` with ``pairs`` generated and waiting to be installed; raise ValueError if
    a new public key would take a name in use (two keys under one name: one lost everywhere)."""
    upcoming = dict(state.next)
    serials = dict(state.serials)
    taken = set(state.public_keys())
    for pair in pairs:
        if pair.public in taken:
            raise ValueError(f"public key name {pair.public} is already in use")
        taken.add(pair.public)
        upcoming[pair.node] = pair
        serials[pair.node] = max(serials.get(pair.node, 0), pair.serial)
    return replace(state, next=_frozen(upcoming), serials=_frozen(serials))


def next_serial(state: JwsState, node: str, taken: Collection[str] = ()) -> int:
    """Return the serial of ``node``'s next pair: above any it had, and free as a file name in the
    journal and in ``taken`` (an adopted fleet may already use ``node1-1.pem``)."""
    used = set(state.public_keys()) | set(taken)
    serial = state.serials.get(node, 0) + 1
    while public_name(node, serial) in used:
        serial += 1
    return serial


def adopted_serials(names: Collection[str], nodes: Collection[str]) -> dict[str, int]:
    """Return, per node, the highest serial among adopted public key names of the form
    ``<node>-<serial>.pem`` (keysyncd's own names), so that new pairs never reuse one."""
    serials: dict[str, int] = {}
    for name in names:
        stem, _, tail = name.removesuffix(".pem").rpartition("-")
        if name.endswith(".pem") and stem in nodes and tail.isdigit() and len(tail) < 10:
            serials[stem] = max(serials.get(stem, 0), int(tail))
    return serials


def installed(state: JwsState, node: str, now: float) -> JwsState:
    """Return ``state`` once ``node`` was verified holding its next private key: the new pair
    signs from now, the old public key starts its retention clock now."""
    upcoming = {name: value for name, value in state.next.items() if name != node}
    signing = dict(state.signing)
    retiring = dict(state.retiring)
    old = signing.get(node)
    if old is not None:
        # one key may be shared by several nodes (an adopted fleet): its clock runs from
        # the last of them to stop signing with it
        earlier = retiring.get(old.public)
        stopped = max(now, earlier.stopped_at or now) if earlier else now
        retiring[old.public] = Retiring(node, old.public_digest, stopped)
    signing[node] = state.next[node]
    return replace(
        state, signing=_frozen(signing), next=_frozen(upcoming), retiring=_frozen(retiring)
    )


def removed_nodes(state: JwsState, nodes: Collection[str], now: float) -> JwsState:
    """Return ``state`` without the pairs of nodes no longer configured: their public keys kept a
    retention from now (when noticed), their pending pairs dropped (never installed)."""
    gone = [node for node in state.signing if node not in nodes]
    if not gone and all(node in nodes for node in state.next):
        return state
    retiring = dict(state.retiring)
    for node in gone:
        pair = state.signing[node]
        retiring[pair.public] = Retiring(node, pair.public_digest, now)
    return replace(
        state,
        signing=_frozen({n: p for n, p in state.signing.items() if n in nodes}),
        next=_frozen({n: p for n, p in state.next.items() if n in nodes}),
        retiring=_frozen(retiring),
    )


@dataclass(frozen=True)
class Retirement:
    """Old public keys that go now, and those kept (with when they may go, or why not yet)."""

    retire: tuple[str, ...]
    keep: tuple[tuple[str, float | None], ...]


def plan_retirement(state: JwsState, retention: float, now: float) -> Retirement:
    """Return which old public keys may be deleted from every node at ``now``: ``retention``
    seconds after their node was verified signing with a newer one (safety rule 2), not before."""
    in_use = {pair.public for pair in (*state.signing.values(), *state.next.values())}
    in_use |= {pair.public_digest for pair in (*state.signing.values(), *state.next.values())}
    retire: list[str] = []
    keep: list[tuple[str, float | None]] = []
    for name, key in sorted(state.retiring.items()):
        safe_at = None if key.stopped_at is None else key.stopped_at + retention
        if name in in_use or key.digest in in_use:
            keep.append((name, None))  # a node signs (or will) with this key: never retired
        elif safe_at is not None and now >= safe_at:
            retire.append(name)
        else:
            keep.append((name, safe_at))
    return Retirement(tuple(retire), tuple(keep))


def without(state: JwsState, retired: Collection[str]) -> JwsState:
    """Return ``state`` after the old public keys ``retired`` were deleted everywhere."""
    kept = {name: key for name, key in state.retiring.items() if name not in retired}
    return replace(state, retiring=_frozen(kept))


def dropped(state: JwsState, nodes: Collection[str]) -> JwsState:
    """Return ``state`` without the waiting pairs of ``nodes`` (their files were lost)."""
    return replace(state, next=_frozen({n: p for n, p in state.next.items() if n not in nodes}))


# --- a change of algorithm ------------------------------------------------------------------
# keystone validates with its one jws_algorithm, and PyJWT raises InvalidKeyError on a public
# key of another algorithm or curve (keystone skips only InvalidSignatureError and DecodeError):
# such a key listed before the signer's fails the token. So the rotation that moves every node
# to the new algorithm removes the former one's public keys in the same run.


def stale_keys(state: JwsState, algorithms: Mapping[str, str], configured: str) -> list[str]:
    """Return the journal's public keys made for another algorithm than ``configured``
    (``algorithms``: each key's, as the store holds it)."""
    return [name for name in state.public_keys() if algorithms.get(name, configured) != configured]


def former_algorithms(state: JwsState, algorithms: Mapping[str, str], configured: str) -> str:
    """Return the algorithms of the stale keys, as a word: ``ES256`` (or ``ES256/EdDSA``)."""
    found = {algorithms[name] for name in stale_keys(state, algorithms, configured)}
    return "/".join(sorted(found))


def migration_drops(
    state: JwsState, installing: Collection[str], algorithms: Mapping[str, str], configured: str
) -> tuple[str, ...]:
    """Return the public keys of another algorithm that go in a run installing the waiting pairs
    of ``installing``: all of them if afterwards every node signs with a ``configured`` key and
    none waits with another, else none (a node signing with one needs it everywhere)."""
    after = {node: pair for node, pair in state.signing.items() if node not in installing}
    after |= {node: pair for node, pair in state.next.items() if node in installing}
    after |= {f"{node} waiting": p for node, p in state.next.items() if node not in installing}
    if any(algorithms.get(pair.public, configured) != configured for pair in after.values()):
        return ()
    return tuple(stale_keys(state, algorithms, configured))


def migration_notice(former: str, configured: str) -> str:
    """Return what a change of algorithm from ``former`` to ``configured`` will do."""
    return (
        f"algorithm changes {former} -> {configured}: the next 'keysyncd rotate' (a "
        f"scheduled rotation keeps {former}) gives every node a new {configured} pair and "
        f"removes the {former} public keys from every node in the same run: keystone "
        f"validates with its one jws_algorithm and fails a token outright when it reads a "
        f"public key of another algorithm before the signer's, so the two cannot stay side "
        f"by side. Every token signed with {former} becomes invalid, and until keystone "
        f"runs with [jwt_tokens] jws_algorithm = {configured} no node signs or validates: "
        f"set it on every node right after that rotation. Until then sync, verify and status "
        f"keep the {former} pairs"
    )
