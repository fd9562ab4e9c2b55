"""Read-only views of a ``jws`` repository: status and plan. Nothing here writes."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keysyncd.actions.inspect import RepositoryPlan, common_status
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.jws import JwsState, former_algorithms, migration_notice, plan_retirement
from keysyncd.core.kinds import JwsModel
from keysyncd.core.schedule import cron_trigger, next_fire_times, rotation_period
from keysyncd.core.text import bounded
from keysyncd.core.times import rfc3339
from keysyncd.errors import KeysyncError
from keysyncd.io.local.jwsstore import JwsStore, store_root
from keysyncd.io.local.state import load_state

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

MAX_ROTATIONS = 30  # a plan longer than this says nothing the first ones do not


def algorithm_change(config: Config, repository: RepositoryConfig) -> str | None:
    """Return what the next rotation does about a change of ``algorithm``, None when there
    is none or the store cannot be read (other checks say why)."""
    try:
        pairs = load_state(config.state_dir, repository.name).jws or JwsState()
        scan = JwsStore(store_root(config, repository), repository.algorithm).scan()
    except KeysyncError:
        return None
    former = former_algorithms(pairs, scan.algorithms, repository.algorithm)
    return migration_notice(former, repository.algorithm) if former else None


def status(config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
    """Return ``common_status`` with every node's pairs (digests only) and old keys kept."""
    state = load_state(config.state_dir, repository.name)
    pairs = state.jws or JwsState()
    store = JwsStore(store_root(config, repository), repository.algorithm)
    retirement = plan_retirement(pairs, _retention(repository), now)
    status = common_status(config, repository, state, now)
    status["problems"] = list(store.scan().problems)
    if not pairs.signing and not pairs.next:
        status["problems"].append(f"{repository.name}: no key pairs (run 'keysyncd init')")
    status["keys"] = [
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
    ]
    status["retiring"] = [
        {"public": name, "node": pairs.retiring[name].node, "safe_at": rfc3339(safe_at)}
        for name, safe_at in retirement.keep
    ]
    status["warnings"] = _warnings(config, repository, pairs)
    return status


def _warnings(config: Config, repository: RepositoryConfig, pairs: JwsState) -> list[str]:
    """Return what waits on the fleet: pairs not installed, old keys, an algorithm change."""
    found = []
    if pairs.next:
        found.append(
            f"new key pairs wait to be installed on {bounded(sorted(pairs.next))}: no private "
            "key changes until every node holds every public key (a sync installs them)"
        )
    unconfirmed = sorted(n for n, key in pairs.retiring.items() if key.stopped_at is None)
    if unconfirmed:
        found.append(
            f"old public keys {bounded(unconfirmed)} stay until their node is verified signing "
            "with its new pair"
        )
    if change := algorithm_change(config, repository):
        found.append(change)
    return found


def _retention(repository: RepositoryConfig) -> int:
    """Return how long an old public key stays after its node stopped signing with it."""
    return repository.token_expiration + repository.allow_expired_window


def _count(trigger: CronTrigger, start: datetime, retention: int) -> int:
    """Return how many rotations a plan shows: enough for a replaced key to retire."""
    try:
        period = rotation_period(trigger, start)
    except KeysyncError:
        return 3
    return min(MAX_ROTATIONS, 3 + math.ceil(retention / period))


def plan(config: Config, repository: RepositoryConfig, now: float) -> RepositoryPlan:
    """Return the next rotations and every pair's lifecycle over them."""
    trigger = cron_trigger(repository.schedule, repository.timezone)
    start = datetime.fromtimestamp(now, UTC)
    retention = _retention(repository)
    times = [
        t.timestamp() for t in next_fire_times(trigger, start, _count(trigger, start, retention))
    ]
    pairs = load_state(config.state_dir, repository.name).jws or JwsState()
    nodes = [node.name for node in config.nodes]
    kept = [
        f"every rotation gives each node a new pair; its old public key stays on every node "
        f"{retention}s after the node was verified signing with the new one"
    ]
    change = algorithm_change(config, repository)
    return RepositoryPlan(
        repository.name,
        times,
        repository.key_kind.model_as(JwsModel).lifecycles(pairs, nodes, retention, now, times),
        kept,
        [change] if change else [],
        "nothing to size: each node has one key pair",
    )
