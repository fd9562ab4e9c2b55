"""Read-only views of a repository: status and plan. They return values; the CLI renders them.

Nothing here writes: no lock, no report, no state. It imports no module that writes either
(not ``actions.local``, whose Run context pulls in the SSH and metrics libraries), so that
``status``, ``plan`` and ``check-config`` start fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from keysyncd.config import Config, RepositoryConfig
from keysyncd.core import clock, due, journal
from keysyncd.core.journal import RepositoryState
from keysyncd.core.kinds import KINDS
from keysyncd.core.nodes import stale_because, standing
from keysyncd.core.policy import Lifecycle, Policy, lint, simulate
from keysyncd.core.schedule import cron_trigger, next_fire_times, rotation_period
from keysyncd.core.times import rfc3339, rfc3339_of
from keysyncd.core.vocabulary import STALE
from keysyncd.errors import KeysyncError
from keysyncd.io.local.ids import local_owner
from keysyncd.io.local.repository import Repository
from keysyncd.io.local.state import load_state


def open_repository(config: RepositoryConfig) -> Repository:
    """Return the Repository for ``config`` (as ``actions.local.open_repository``)."""
    return Repository(config.path, KINDS[config.kind], *local_owner(config))


def policy_of(config: RepositoryConfig) -> Policy:
    """Return the rotation Policy of a repository's config (``RepositoryConfig.policy``)."""
    return config.policy()


def lint_repository(config: RepositoryConfig, now: float) -> list[str]:
    """Return keystone's sizing warnings for ``config`` at its schedule (empty: sound)."""
    trigger = cron_trigger(config.schedule, config.timezone)
    return lint(policy_of(config), rotation_period(trigger, datetime.fromtimestamp(now, UTC)))


def repository_status(config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
    """Return a JSON-ready status of one repository: keys by role (digests only), problems,
    permission warnings, generation, last and next rotation, lint warnings and node status.
    Every time is an RFC 3339 UTC string."""
    repo = open_repository(repository)
    state = load_state(config.state_dir, repository.name)
    trigger = cron_trigger(repository.schedule, repository.timezone)
    upcoming = next_fire_times(trigger, datetime.fromtimestamp(now, UTC), 1)
    last = state.last_action
    status: dict[str, Any] = {
        "name": repository.name,
        "kind": repository.kind,
        "path": str(repository.path),
        "generation": state.generation,
        "last_rotation_at": rfc3339(state.last_rotation_at),
        "next_rotation_at": rfc3339_of(upcoming[0]) if upcoming else None,
        # the rotation missed since the last one, by the rule the metric and alert use
        "rotation_overdue_since": rfc3339(
            due.overdue_since(state, repository.schedule, repository.timezone, now)
        ),
        "last_action": None if last is None else {**asdict(last), "at": rfc3339(last.at)},
        "rotation_blocked_by": None
        if state.hook_block is None
        else {
            "hook": list(state.hook_block.hook),
            "status": state.hook_block.status,
            "outcome": state.hook_block.outcome(),
            "at": rfc3339(state.hook_block.at),
        },
        "warnings": lint_repository(repository, now),
        "problems": [],
        "keys": [],
        "nodes": nodes_json(config, state),
        "clock": clock.status_json(state, now, config.clock.max_skew),
        "unwritten_reports": len(state.unwritten_reports),
    }
    if not repository.path.exists() and state.digests:
        status["problems"].append(
            f"{repository.path}: the repository directory is missing (moved or deleted) but "
            f"keysyncd holds generation {state.generation} of it: restore it (nothing is pushed "
            "until it is back)"
        )
        return status
    if not repo.holds_keys():
        status["problems"].append(f"{repository.path}: no keys (run 'keysyncd init')")
        return status
    scan = repo.scan()
    status["problems"].extend(scan.problems)
    if not scan.problems and scan.keyset.digests() != dict(state.digests):
        # changed outside keysyncd and not yet recorded: no node holds these keys yet
        status["nodes"] = nodes_json(config, state, keys_changed=True)
    status["warnings"].extend(repo.permission_problems())
    for index, digest in scan.keyset.digests().items():
        entry = state.history.get(index) if state.digests.get(index) == digest else None
        status["keys"].append(
            {
                "index": index,
                "role": scan.keyset.role(index),
                "sha256": digest,
                "created_at": rfc3339(entry.created_at if entry else None),
                "demoted_at": rfc3339(entry.demoted_at if entry else None),
            }
        )
    return status


def nodes_json(
    config: Config, state: RepositoryState, keys_changed: bool = False
) -> dict[str, dict[str, Any]]:
    """Return every configured node's record as ``status`` shows it, judged against the
    controller's current generation (``keysyncd.core.nodes.standing``): ``status`` is what
    the node is now (``stale`` when verified before the controller changed, None when never
    checked), ``checked_status`` what its last check found, ``checked_at`` when that check
    was, ``last_verified_at`` the last time it was in sync."""
    nodes: dict[str, dict[str, Any]] = {}
    for node in config.nodes:
        record = state.nodes.get(node.name)
        if record is None:
            nodes[node.name] = {"status": None, "checked_status": None}
            continue
        document = asdict(record)
        for key in ("checked_at", "last_verified_at", "next_attempt_at"):
            document[key] = rfc3339(document[key])
        shown = standing(record, state.generation, keys_changed)
        document["checked_status"] = record.status
        document["status"] = shown
        if shown == STALE:
            document["stale"] = stale_because(record, state.generation, keys_changed)
        nodes[node.name] = document
    return nodes


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
    history = state.history if dict(state.digests) == keyset.digests() else {}
    trigger = cron_trigger(repository.schedule, repository.timezone)
    count = rotations or repository.max_active_keys + 2
    times = [
        t.timestamp() for t in next_fire_times(trigger, datetime.fromtimestamp(now, UTC), count)
    ]
    known = replace(state, history=journal.frozen(history))
    retirement = journal.due_retirement(known, keyset.indices, policy, now)
    kept = [f"key {k.index} kept beyond max_active_keys: {k.reason}" for k in retirement.keep]
    return RepositoryPlan(
        name=repository.name,
        rotations=times,
        lifecycles=simulate(keyset.indices, history, policy, times),
        kept_now=kept,
        warnings=lint_repository(repository, now),
    )
