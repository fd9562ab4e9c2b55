"""Revocation of a leaked key (``keysyncd revoke``, SPEC section 10), pure: which key the
operator named, what must happen to it (``plan_revocation``), which tokens die with it, and the
journal's records of it. No IO; time is passed in.

A revocation is journaled (``Revocation``) before anything changes for it on any node and
stays until every node is verified without the key; its digest is recorded forever
(``RevokedKey``): no later action pushes it again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from keysyncd.core.policy import History, migrated_past
from keysyncd.core.times import rfc3339
from keysyncd.core.vocabulary import GOOD
from keysyncd.errors import UsageError

if TYPE_CHECKING:  # the journal holds these records (no import cycle at run time)
    from keysyncd.core.journal import RepositoryState

STAGED, PRIMARY, SECONDARY, GONE = "staged", "primary", "secondary", "gone"


@dataclass(frozen=True)
class RevokedKey:
    """A key revoked for good: its digest, why, and when (never pushed again)."""

    digest: str
    reason: str
    at: float


@dataclass(frozen=True)
class Revocation:
    """A revocation under way (journaled before it changes anything; a crash leaves it for
    the next run to finish): the key's digest, why, when it started, whether forced; for JWS
    pairs, the ``nodes`` whose pairs it replaces and the ``more`` digests revoked with it."""

    digest: str
    reason: str
    started_at: float
    forced: bool = False
    nodes: tuple[str, ...] = ()
    more: tuple[str, ...] = ()

    @property
    def digests(self) -> tuple[str, ...]:
        """Return every digest it revokes."""
        return (self.digest, *self.more)


@dataclass(frozen=True)
class RevocationPlan:
    """What revoking ``digest`` takes, in this order: ``promote`` the staged key (it was the
    primary: the gate first), or a ``new_staged`` key (it was staged); then, for credential keys,
    a ``migrate`` to the primary that succeeds; then ``delete`` its index everywhere. ``index``
    None: the controller no longer holds it (only the nodes are left to clean)."""

    digest: str
    index: int | None
    role: str
    promote: bool
    new_staged: bool
    migrate: bool
    delete: int | None

    def to_json(self) -> dict[str, object]:
        """Return the plan as a report's ``details.plan`` shows it (digests only)."""
        return {
            "revoke": self.digest,
            "index": self.index,
            "role": self.role,
            "steps": self.steps(),
        }

    def steps(self) -> list[str]:
        """Return the plan's steps in words, in order (``["promote the staged key", ...]``)."""
        said = []
        if self.promote:
            said.append("promote the staged key on every node (phase 1, the gate, phase 2)")
        if self.new_staged:
            said.append("replace the staged key 0 with a new one on every node")
        if self.migrate:
            said.append(
                "run the after_rotate migration with the new primary; stop unless it succeeds"
            )
        if self.delete is not None:
            said.append(f"delete key {self.delete} on the controller and every node at once")
        said.append("read every node back: no node may hold the revoked key")
        return said


def select(
    digests: Mapping[int, str], key: str | None, index: int | None, also: Collection[str] = ()
) -> str:
    """Return the digest the operator named: ``index`` in ``digests``, or the one digest of
    ``digests`` (or ``also``: a revocation under way) starting with ``key``. Raise UsageError
    (one line) if it names no key or more than one."""
    if index is not None:
        if index not in digests:
            held = ", ".join(str(i) for i in sorted(digests))
            raise UsageError(f"no key {index} in the repository (it holds {held})")
        return digests[index]
    prefix = (key or "").strip().lower().removeprefix("sha256:")
    if len(prefix) < 4:
        raise UsageError("--key needs at least 4 hex digits of the key's sha256 (see 'status')")
    found = sorted({d for d in (*digests.values(), *also) if d.startswith(prefix)})
    if not found:
        # what was typed is never echoed: an operator may have pasted the key itself
        raise UsageError("no key's sha256 starts with the --key given (see 'keysyncd status')")
    if len(found) > 1:
        raise UsageError(f"{len(found)} keys' sha256 start with the --key given: give more digits")
    return found[0]


def succeeds(
    pending: Revocation | None, named: Collection[str], held: Collection[str], repository: str
) -> Revocation | None:
    """Return the revocation under way that one of the ``named`` digests continues (the same
    digests), or None: it starts afresh. One waiting only for nodes to answer (the controller
    ``held`` none of its keys any more: any sync removes them from the nodes, revoked for good)
    gives way to it, whatever the kind; raise UsageError if one of other keys is unfinished on
    the controller."""
    if pending is None or set(pending.digests) == set(named):
        return pending
    if not set(pending.digests) & set(held):
        return None
    raise UsageError(
        f"{repository}: the revocation of sha256:{pending.digest[:16]} is unfinished: finish "
        f"it first ('keysyncd revoke --repo {repository}')"
    )


def role(digests: Mapping[int, str], digest: str) -> tuple[int | None, str]:
    """Return where the controller holds ``digest`` and its role there ((None, GONE): not)."""
    index = next((i for i, d in sorted(digests.items()) if d == digest), None)
    if index is None:
        return None, GONE
    if index == 0:
        return 0, STAGED
    return index, PRIMARY if index == max(digests) else SECONDARY


def plan_revocation(
    digests: Mapping[int, str], digest: str, history: History, retire_by: str
) -> RevocationPlan:
    """Return how to revoke ``digest`` from a repository holding ``digests``. Credential keys
    (``retire_by`` "migration") encrypt credentials: the primary or a secondary no migration
    went past is deleted only after a migration succeeded (the staged key encrypted nothing)."""
    index, found = role(digests, digest)
    promote = found == PRIMARY
    needs_migration = found == PRIMARY or (
        found == SECONDARY and index is not None and not migrated_past(index, history)
    )
    return RevocationPlan(
        digest=digest,
        index=index,
        role=found,
        promote=promote,
        new_staged=found == STAGED,
        migrate=retire_by == "migration" and needs_migration,
        delete=index if found in (PRIMARY, SECONDARY) else None,
    )


def token_span(history: History, index: int | None, now: float) -> dict[str, float | None]:
    """Return the span of issue times of the tokens that die with key ``index``: its life as
    the primary (``from_at`` None: it never was; ``until_at`` now for the current primary)."""
    entry = history.get(index) if index is not None else None
    if entry is None or entry.promoted_at is None:
        return {"issued_from_at": None, "issued_until_at": None}
    until = entry.demoted_at if entry.demoted_at is not None else now
    return {"issued_from_at": entry.promoted_at, "issued_until_at": until}


def dies(plan: RevocationPlan, span: Mapping[str, float | None], retire_by: str) -> str:
    """Return what revoking ``plan``'s key kills, in words (digests only)."""
    key = f"sha256:{plan.digest[:16]} ({plan.role})"
    if retire_by == "migration":
        return f"revoking credential key {key}: it is deleted only once no credential needs it"
    if span.get("issued_from_at") is None:
        return (
            f"revoking key {key}: keystone issued no token with it; tokens forged with it are "
            "rejected on every node once it is gone"
        )
    return (
        f"revoking key {key}: every token issued with it (while it was the primary: "
        "details.revoke.tokens) is rejected on every node once it is gone; every other token "
        "stays valid"
    )


def revoked_digests(revoked: Collection[RevokedKey]) -> frozenset[str]:
    """Return the digests of every key ever revoked."""
    return frozenset(key.digest for key in revoked)


def recorded(revoked: tuple[RevokedKey, ...], revocation: Revocation) -> tuple[RevokedKey, ...]:
    """Return ``revoked`` with ``revocation``'s keys added (each once)."""
    known = revoked_digests(revoked)
    new = [d for d in dict.fromkeys(revocation.digests) if d not in known]
    return (*revoked, *(RevokedKey(d, revocation.reason, revocation.started_at) for d in new))


def held_revoked(
    digests: Mapping[int, str], revoked: Collection[RevokedKey]
) -> tuple[tuple[int, str], ...]:
    """Return the (index, digest) of every key in ``digests`` that was revoked."""
    gone = revoked_digests(revoked)
    return tuple((i, d) for i, d in sorted(digests.items()) if d in gone)


def begin(state: RepositoryState, revocation: Revocation) -> RepositoryState:
    """Return ``state`` with ``revocation`` under way and its key recorded as revoked."""
    return replace(state, revocation=revocation, revoked=recorded(state.revoked, revocation))


def abandon(state: RepositoryState, before: RepositoryState) -> RepositoryState:
    """Return ``state`` with no revocation under way and the revoked keys of ``before``
    (a revocation that changed nothing: the gate refused it)."""
    return replace(state, revocation=before.revocation, revoked=before.revoked)


def finished(state: RepositoryState) -> RepositoryState:
    """Return ``state`` with its revocation done (every node verified without the key)."""
    return replace(state, revocation=None)


def status_json(state: RepositoryState) -> dict[str, object] | None:
    """Return the revocation under way as ``status`` shows it (None: none): its key (digest),
    why, since when, and the nodes not yet verified without it."""
    pending = state.revocation
    if pending is None:
        return None
    unverified = may_hold(state, state.nodes)
    return {
        "sha256": pending.digest,
        "reason": pending.reason,
        "started_at": rfc3339(pending.started_at),
        "unverified_nodes": unverified,
    }


def seen_again(
    seen: Mapping[str, Collection[str]], cleaned: Collection[str], revoked: Collection[RevokedKey]
) -> list[str]:
    """Return a line for every node whose digests ``seen`` (before a push) held a revoked key:
    removed if the node is in ``cleaned`` (verified after the push), else still there."""
    gone = revoked_digests(revoked)
    return [
        f"node {name} held revoked key sha256:{digest[:16]} again: "
        + ("removed" if name in cleaned else "not removed yet (see the node's error)")
        for name, digests in sorted(seen.items())
        for digest in sorted(set(digests) & gone)
    ]


def may_hold(state: RepositoryState, nodes: Collection[str]) -> list[str]:
    """Return the ``nodes`` that may still hold the key of the revocation under way (none if
    there is none): every node not verified holding the current generation, which lacks it."""
    if state.revocation is None:
        return []
    records = state.nodes
    return sorted(
        name
        for name in nodes
        if name not in records
        or records[name].status not in GOOD
        or records[name].generation != state.generation
    )
