"""What ``plan`` shows for a symmetric repository (Fernet, credential): each key's future. Pure:
the planner a real rotation runs (``keysyncd.core.policy``), on a healthy fleet (every push
verified and every migration successful right after its rotation).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

from keysyncd.core.policy import (
    History,
    KeyHistory,
    Policy,
    confirm_demotions,
    plan_rotation,
    rotated_history,
)

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
