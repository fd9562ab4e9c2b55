"""Read-only views of a ``jws`` repository: status and plan. Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keysyncd.actions.inspect import nodes_json
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core import clock, due
from keysyncd.core.jws import JwsState, former_algorithms, migration_notice, plan_retirement
from keysyncd.core.schedule import cron_trigger, next_fire_times
from keysyncd.core.times import rfc3339, rfc3339_of
from keysyncd.errors import KeysyncError
from keysyncd.io.local.jwsstore import JwsStore, store_root
from keysyncd.io.local.state import load_state


def algorithm_change(config: Config, repository: RepositoryConfig) -> str | None:
    """Return what the next rotation does about a change of ``algorithm`` (the journal's
    keys are of another one), or None when there is none or the store cannot be read (the
    actions and check-config's local checks say why)."""
    try:
        pairs = load_state(config.state_dir, repository.name).jws or JwsState()
        scan = JwsStore(store_root(config, repository), repository.algorithm).scan()
    except KeysyncError:
        return None
    former = former_algorithms(pairs, scan.algorithms, repository.algorithm)
    return migration_notice(former, repository.algorithm) if former else None


def status(config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
    """Return a JSON-ready status: every node's pair (digests only), the pairs waiting to be
    installed, the old public keys kept and until when, node status, store problems."""
    state = load_state(config.state_dir, repository.name)
    pairs = state.jws or JwsState()
    store = JwsStore(store_root(config, repository), repository.algorithm)
    retention = repository.token_expiration + repository.allow_expired_window
    retirement = plan_retirement(pairs, retention, now)
    trigger = cron_trigger(repository.schedule, repository.timezone)
    upcoming = next_fire_times(trigger, datetime.fromtimestamp(now, UTC), 1)
    problems = list(store.scan().problems)
    if not pairs.signing and not pairs.next:
        problems.append(f"{repository.name}: no key pairs (run 'keysyncd init')")
    return {
        "name": repository.name,
        "kind": repository.kind,
        "path": str(repository.path),
        "algorithm": repository.algorithm,
        "generation": state.generation,
        "last_rotation_at": rfc3339(state.last_rotation_at),
        "next_rotation_at": rfc3339_of(upcoming[0]) if upcoming else None,
        # the rotation missed since the last one, by the rule the metric and alert use
        "rotation_overdue_since": rfc3339(
            due.overdue_since(state, repository.schedule, repository.timezone, now)
        ),
        "keys": [
            {
                "index": pair.serial,
                "role": role,
                "node": node,
                "public": pair.public,
                "sha256": pair.public_digest,
                "created_at": rfc3339(pair.created_at),
                "demoted_at": None,
            }
            for role, group in (("signing", pairs.signing), ("waiting", pairs.next))
            for node, pair in sorted(group.items())
        ],
        "retiring": [
            {"public": name, "node": key.node, "safe_at": rfc3339(safe_at)}
            for name, safe_at in retirement.keep
            for key in [pairs.retiring[name]]
        ],
        "problems": problems,
        "warnings": [change] if (change := algorithm_change(config, repository)) else [],
        "rotation_blocked_by": None,
        "last_action": None,
        "nodes": nodes_json(config, state),
        "clock": clock.status_json(state, now, config.clock.max_skew),
        "unwritten_reports": len(state.unwritten_reports),
    }


@dataclass(frozen=True)
class JwsPlan:
    """What ``plan`` shows for a ``jws`` repository (``plan_lines`` renders it)."""

    name: str
    rotations: list[float]
    lifecycles: list[Any]
    kept_now: list[str]
    warnings: list[str]


def plan(config: Config, repository: RepositoryConfig, now: float) -> JwsPlan:
    """Return the next rotations and what each does to every node's pair."""
    trigger = cron_trigger(repository.schedule, repository.timezone)
    times = [t.timestamp() for t in next_fire_times(trigger, datetime.fromtimestamp(now, UTC), 3)]
    retention = repository.token_expiration + repository.allow_expired_window
    kept = [
        f"every rotation gives each node a new pair; its old public key stays on every node "
        f"{retention}s after the node was verified signing with the new one"
    ]
    change = algorithm_change(config, repository)
    return JwsPlan(repository.name, times, [], kept, [change] if change else [])
