"""Pure rotation decisions with the time passed in: what to promote, create, retire. As
keystone's fernet_rotate, except that a key goes only once no token it protected can be valid
(safety rule 2): ``now >= confirmed_at + token_expiration + allow_expired_window``, where
``confirmed_at`` is when every node was first verified past its demotion. Credential keys
protect no token: only a migration to a newer primary retires them (``migrated_at``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from keysyncd.errors import KeysyncError


@dataclass(frozen=True)
class KeyHistory:
    """When one key became staged, primary and secondary (epoch seconds; None = not yet)."""

    created_at: float | None = None
    promoted_at: float | None = None
    demoted_at: float | None = None
    confirmed_at: float | None = None  # every node verified past its demotion (module doc)
    # a migration to this key as primary (after_rotate, or confirmed by the operator) that
    # started once every node held it succeeded: no credential needs an older key since
    migrated_at: float | None = None


History = Mapping[int, KeyHistory]


@dataclass(frozen=True)
class Policy:
    """The rotation policy of one repository."""

    max_active_keys: int
    token_expiration: int
    allow_expired_window: int
    retire_by: str = "time"  # "time" (tokens) or "migration" (credentials; module doc)

    @property
    def retention(self) -> int:
        """Return how long a demoted key must be kept, in seconds."""
        return self.token_expiration + self.allow_expired_window


@dataclass(frozen=True)
class KeptKey:
    """A key over max_active_keys that is kept because retiring it is not yet safe."""

    index: int
    safe_at: float | None
    reason: str


@dataclass(frozen=True)
class RetirementPlan:
    """Which keys over max_active_keys go now, and which stay and why."""

    retire: tuple[int, ...]
    keep: tuple[KeptKey, ...]


@dataclass(frozen=True)
class RotationPlan:
    """One rotation: ``0`` becomes ``new_primary``, a new ``0`` is made, ``retire`` go (from {0,
    1, 2}, max 3, every key safe: new_primary 3, demoted 2, retire (1,), resulting (0, 2, 3))."""

    new_primary: int
    demoted: int | None
    retire: tuple[int, ...]
    keep: tuple[KeptKey, ...]
    resulting: tuple[int, ...]

    def kept_note(self) -> str:
        """Return why keys stay beyond max_active_keys ("" when none does)."""
        return "; ".join(
            f"key {kept.index} kept beyond max_active_keys: {kept.reason}" for kept in self.keep
        )


MIGRATION_PENDING = (
    "credentials may still be encrypted with it: no migration to a newer primary has "
    "succeeded yet (after_rotate, or keysyncd confirm-migration)"
)


def migrated_past(index: int, history: History) -> bool:
    """Return True if a migration to a key newer than ``index`` has succeeded: no credential
    can still be encrypted with ``index`` (module doc)."""
    return any(entry.migrated_at is not None for newer, entry in history.items() if newer > index)


def retired_note(policy: Policy, retired: Collection[int], would: bool = False) -> str:
    """Return why ``retired`` keys go, in the words of the policy's rule."""
    why = "no live token can need them"
    if policy.retire_by == "migration":
        why = "every credential was migrated to a newer primary"
    return f"{'would retire' if would else 'retired'} keys {sorted(retired)}: {why}"


def left_to_the_fleet(retire: Collection[int]) -> str:
    """Return that ``retire`` keys are due but left to a whole-fleet sync (``sync --node``
    changes only its node: retiring on the controller would make every other node differ)."""
    return (
        f"keys {sorted(retire)} may be retired now: 'keysyncd sync' without --node retires "
        "them (sync --node changes only its node, never the controller)"
    )


def confirm_demotions(history: History, now: float) -> dict[int, KeyHistory]:
    """Return ``history`` with every demoted, unconfirmed key confirmed at ``now`` (when every
    node was verified holding the current state), never before its demotion (a clock step)."""
    return {
        index: replace(entry, confirmed_at=max(now, entry.demoted_at))
        if entry.demoted_at is not None and entry.confirmed_at is None
        else entry
        for index, entry in history.items()
    }


def plan_retirement(
    indices: Collection[int], history: History, policy: Policy, now: float
) -> RetirementPlan:
    """Return which secondaries beyond max_active_keys may be deleted at ``now``: lowest first,
    as keystone takes them, each one not yet safe kept with the reason (by migration: no time)."""
    secondaries = sorted(index for index in indices if index > 0)
    excess = len(secondaries) - (policy.max_active_keys - 1)
    retire: list[int] = []
    keep: list[KeptKey] = []
    for index in secondaries[: max(excess, 0)]:
        if policy.retire_by == "migration":
            if migrated_past(index, history):
                retire.append(index)
            else:
                keep.append(KeptKey(index, None, MIGRATION_PENDING))
            continue
        known = history.get(index, KeyHistory())
        # retention runs from the fleet-wide confirmation of the demotion (module doc)
        safe_at = None if known.confirmed_at is None else known.confirmed_at + policy.retention
        if safe_at is not None and now >= safe_at:
            retire.append(index)
        elif safe_at is None:  # the demotion is not on record, or not confirmed everywhere
            reason = "no demotion time on record"
            if known.demoted_at is not None:
                reason = "not yet verified demoted on every node"
            keep.append(KeptKey(index, None, reason))
        else:
            wait = math.ceil(safe_at - now)
            keep.append(KeptKey(index, safe_at, f"may still protect live tokens for {wait}s"))
    return RetirementPlan(tuple(retire), tuple(keep))


def plan_rotation(
    indices: Collection[int], history: History, policy: Policy, now: float
) -> RotationPlan:
    """Return the rotation of a repository holding ``indices`` at ``now``; raise KeysyncError if
    the set has no staged key 0 or no primary."""
    if 0 not in indices or not any(index > 0 for index in indices):
        raise KeysyncError("cannot rotate: the repository needs a staged key 0 and a primary")
    old_primary = max(indices)
    new_primary = old_primary + 1
    after = [index for index in indices if index != 0] + [new_primary]
    after_history = rotated_history(history, old_primary, new_primary, now)
    retirement = plan_retirement(after, after_history, policy, now)
    resulting = tuple(sorted({0, *after} - set(retirement.retire)))
    return RotationPlan(new_primary, old_primary, retirement.retire, retirement.keep, resulting)


def rotated_history(
    history: History, old_primary: int | None, new_primary: int, now: float
) -> dict[int, KeyHistory]:
    """Return the history after a rotation at ``now`` (before retirement is applied)."""
    updated = dict(history)
    staged = updated.pop(0, KeyHistory(created_at=now))
    updated[new_primary] = replace(staged, promoted_at=now)
    if old_primary is not None and old_primary in updated:
        updated[old_primary] = replace(updated[old_primary], demoted_at=now)
    elif old_primary is not None:
        updated[old_primary] = KeyHistory(demoted_at=now)
    updated[0] = KeyHistory(created_at=now)
    return updated


def lint(policy: Policy, rotation_period: float) -> list[str]:
    """Return warnings about ``policy`` at this rotation period (none when sound, or for keys
    retired by migration: no tokens); raise KeysyncError if the period is not positive."""
    if policy.retire_by != "time":
        return []
    if rotation_period <= 0:
        raise KeysyncError("rotation period must be positive")
    needed = math.ceil(policy.retention / rotation_period) + 2  # keystone's sizing rule
    if policy.max_active_keys >= needed:
        return []
    return [
        f"unsafe: max_active_keys {policy.max_active_keys} is too small for token_expiration "
        f"{policy.token_expiration}s + allow_expired_window {policy.allow_expired_window}s "
        f"at one rotation every {rotation_period:.0f}s; needs at least {needed} "
        "(keysyncd keeps the extra keys until they are safe to retire, keystone would not)"
    ]


# --- what ``plan`` shows: each key's future, from the planner a real rotation runs, on a
# healthy fleet (every push verified and every migration successful right after its rotation)

Events = dict[int, dict[str, float | None]]  # index -> stage ("primary") -> when
STAGES = ("staged", "primary", "secondary", "retired")


@dataclass(frozen=True)
class Lifecycle:
    """One key's future: when it is staged, primary, secondary and retired (None = later)."""

    index: int
    staged_at: float | None
    primary_at: float | None
    secondary_at: float | None
    retired_at: float | None


def simulate(
    indices: Collection[int], history: History, policy: Policy, rotations: list[float]
) -> list[Lifecycle]:
    """Return each key's lifecycle over the future rotation times ``rotations`` (ascending),
    keys created on the way numbered as they will be."""
    current = set(indices)
    state = dict(history)
    events: Events = {}
    for index in current:
        known = state.get(index, KeyHistory())
        times = (known.created_at, known.promoted_at, known.demoted_at)
        events[index] = dict(zip(STAGES, times, strict=False))
    for now in rotations:
        plan = plan_rotation(current, state, policy, now)
        # on a healthy fleet the push verifies every node and a migration succeeds at once
        state = confirm_demotions(rotated_history(state, plan.demoted, plan.new_primary, now), now)
        if policy.retire_by == "migration":
            state[plan.new_primary] = replace(state[plan.new_primary], migrated_at=now)
        events[plan.new_primary] = {**events.pop(0), "primary": now}
        if plan.demoted is not None:
            events.setdefault(plan.demoted, {})["secondary"] = now
        events[0] = {"staged": now}
        for index in plan.retire:
            state.pop(index, None)
            events.setdefault(index, {})["retired"] = now
        current = set(plan.resulting)
    return [
        Lifecycle(index, *(found.get(stage) for stage in STAGES))
        for index, found in sorted(events.items(), key=lambda item: (item[0] == 0, item[0]))
    ]
