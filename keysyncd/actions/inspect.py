"""Read-only views of a repository: status and plan. They return values; the CLI renders them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keysyncd.actions.local import open_repository, policy_of
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.policy import Lifecycle, lint, plan_retirement, simulate
from keysyncd.core.schedule import cron_trigger, next_fire_times, rotation_period
from keysyncd.errors import KeysyncError
from keysyncd.io.state import load_state


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _lint(config: RepositoryConfig, now: float) -> list[str]:
    trigger = cron_trigger(config.schedule, config.timezone)
    period = rotation_period(trigger, datetime.fromtimestamp(now, UTC))
    return lint(policy_of(config), period)


def repository_status(config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
    """Return a JSON-ready status of one repository: keys by role (digests only), problems,
    permission warnings, generation, last and next rotation, lint warnings and node status.
    """
    repo = open_repository(repository)
    state = load_state(config.state_dir, repository.name)
    status: dict[str, Any] = {
        "name": repository.name,
        "kind": repository.kind,
        "path": str(repository.path),
        "generation": state.generation,
        "last_rotation_at": _iso(state.last_rotation_at),
        "last_action": state.last_action,
        "rotation_blocked_by": state.hook_block,
        "warnings": _lint(repository, now),
        "problems": [],
        "keys": [],
        "nodes": state.nodes,
    }
    trigger = cron_trigger(repository.schedule, repository.timezone)
    upcoming = next_fire_times(trigger, datetime.fromtimestamp(now, UTC), 1)
    status["next_rotation_at"] = (
        upcoming[0].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if upcoming else None
    )
    if not repo.holds_keys():
        status["problems"].append(f"{repository.path}: no keys (run 'keysyncd init')")
        return status
    scan = repo.scan()
    status["problems"].extend(scan.problems)
    status["warnings"].extend(repo.permission_problems())
    for index, digest in scan.keyset.digests().items():
        entry = state.history.get(index) if state.digests.get(index) == digest else None
        status["keys"].append(
            {
                "index": index,
                "role": scan.keyset.role(index),
                "sha256": digest,
                "created_at": _iso(entry.created_at if entry else None),
                "demoted_at": _iso(entry.demoted_at if entry else None),
            }
        )
    return status


@dataclass(frozen=True)
class RepositoryPlan:
    """What ``plan`` shows for one repository."""

    name: str
    rotations: list[float]
    lifecycles: list[Lifecycle]
    kept_now: list[str]
    warnings: list[str]


def repository_plan(
    config: Config, repository: RepositoryConfig, now: float, rotations: int | None = None
) -> RepositoryPlan:
    """Return each key's lifecycle over the next rotations and the config lint.

    Raise KeysyncError if the repository cannot be read.
    """
    repo = open_repository(repository)
    policy = policy_of(repository)
    state = load_state(config.state_dir, repository.name)
    scan = repo.scan()
    if scan.problems:
        raise KeysyncError("; ".join(scan.problems))
    keyset = scan.keyset
    history = state.history if state.digests == keyset.digests() else {}
    trigger = cron_trigger(repository.schedule, repository.timezone)
    count = rotations or repository.max_active_keys + 2
    times = [
        t.timestamp() for t in next_fire_times(trigger, datetime.fromtimestamp(now, UTC), count)
    ]
    retirement = plan_retirement(keyset.indices, history, policy, now)
    kept = [f"key {k.index} kept beyond max_active_keys: {k.reason}" for k in retirement.keep]
    return RepositoryPlan(
        name=repository.name,
        rotations=times,
        lifecycles=simulate(keyset.indices, history, policy, times),
        kept_now=kept,
        warnings=_lint(repository, now),
    )
