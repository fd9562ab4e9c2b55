"""Read-only views of a repository of each kind, status and plan, as values. Nothing here
writes or imports a module that does (``status``, ``plan`` and ``check-config`` start fast)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keysyncd.config import Config, RepositoryConfig
from keysyncd.core import clock, due, journal
from keysyncd.core.journal import RepositoryState
from keysyncd.core.kinds import JwsModel, SymmetricModel
from keysyncd.core.nodes import stale_because, standing
from keysyncd.core.policy import Lifecycle, lint
from keysyncd.core.schedule import cron_trigger, next_fire_times, rotation_period
from keysyncd.core.text import bounded
from keysyncd.core.times import rfc3339, rfc3339_of
from keysyncd.core.vocabulary import STALE
from keysyncd.errors import KeysyncError
from keysyncd.io.local.repolinks import local_owner
from keysyncd.io.local.repository import Repository
from keysyncd.io.local.state import load_state

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

    from keysyncd.core.jws import JwsState
    from keysyncd.core.jwsconverge import PairLifecycle


def open_repository(config: RepositoryConfig) -> Repository:
    """Return the Repository for ``config``; ownership is applied only when running as root."""
    return Repository(config.path, config.key_kind, *local_owner(config))


def lint_repository(config: RepositoryConfig, now: float) -> list[str]:
    """Return keystone's sizing warnings for ``config`` at its schedule (empty: sound)."""
    trigger = cron_trigger(config.schedule, config.timezone)
    return lint(config.policy(), rotation_period(trigger, datetime.fromtimestamp(now, UTC)))


def common_status(
    config: Config, repository: RepositoryConfig, state: RepositoryState, now: float
) -> dict[str, Any]:
    """Return the JSON-ready fields every kind's status has (lists empty for it to fill)."""
    trigger = cron_trigger(repository.schedule, repository.timezone)
    upcoming = next_fire_times(trigger, datetime.fromtimestamp(now, UTC), 1)
    last, block = state.last_action, state.hook_block
    return {
        "name": repository.name,
        "kind": repository.kind,
        "path": str(repository.path),
        "algorithm": repository.algorithm if "algorithm" in repository.key_kind.fields else None,
        "generation": state.generation,
        # a JWS rotation journals its success only (no key is promoted on the controller)
        "last_rotation_at": rfc3339(state.last_rotation_at or state.last_success.get("rotate")),
        "next_rotation_at": rfc3339_of(upcoming[0]) if upcoming else None,
        # the rotation missed since the last one, by the rule the metric and alert use
        "rotation_overdue_since": rfc3339(
            due.overdue_since(state, repository.schedule, repository.timezone, now)
        ),
        "last_action": None if last is None else {**asdict(last), "at": rfc3339(last.at)},
        "rotation_blocked_by": None
        if block is None
        else {
            "hook": list(block.hook),
            "status": block.status,
            "outcome": block.outcome(),
            "at": rfc3339(block.at),
        },
        "warnings": [],
        "problems": [],
        "keys": [],
        "retiring": [],  # old keys kept until safe to delete (symmetric: see ``plan``)
        "nodes": nodes_json(config, state),
        "clock": clock.status_json(state, now, config.clock.max_skew),
        "unwritten_reports": len(state.unwritten_reports),
        "revocation": None if state.revocation is None else revocation_json(state),
    }


def revocation_json(state: RepositoryState) -> dict[str, Any] | None:
    """Return the revocation under way as status shows it (its module: only then)."""
    from keysyncd.core.revocation import status_json

    return status_json(state)


def repository_status(config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
    """Return ``common_status`` with the keys by role (digests only), problems, warnings."""
    repo = open_repository(repository)
    state = load_state(config.state_dir, repository.name)
    status = common_status(config, repository, state, now)
    status["warnings"] = lint_repository(repository, now)
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
    """Return every node's record as ``status`` shows it (``core.nodes.standing``)."""
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
        document |= {"checked_status": record.status, "status": shown}
        if shown == STALE:
            document["stale"] = stale_because(record, state.generation, keys_changed)
        nodes[node.name] = document
    return nodes


@dataclass(frozen=True)
class RepositoryPlan:
    """What ``plan`` shows for one repository."""

    name: str
    rotations: list[float]
    lifecycles: Sequence[Lifecycle | PairLifecycle]  # the kind's model's (core.kinds)
    kept_now: list[str]
    warnings: list[str]
    sound: str = "max_active_keys is large enough for this schedule"  # shown without warnings


def repository_plan(
    config: Config, repository: RepositoryConfig, now: float, rotations: int | None = None
) -> RepositoryPlan:
    """Return each key's lifecycle and the lint; raise KeysyncError if unreadable."""
    policy = repository.policy()
    state = load_state(config.state_dir, repository.name)
    scan = open_repository(repository).scan()
    if scan.problems:
        raise KeysyncError("; ".join(scan.problems))
    keyset = scan.keyset
    history = state.history if dict(state.digests) == keyset.digests() else {}
    trigger = cron_trigger(repository.schedule, repository.timezone)
    count = rotations or repository.max_active_keys + 2
    times = [
        t.timestamp() for t in next_fire_times(trigger, datetime.fromtimestamp(now, UTC), count)
    ]
    simulate = repository.key_kind.model_as(SymmetricModel).lifecycles
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


MAX_ROTATIONS = 30  # a plan longer than this says nothing the first ones do not


def algorithm_change(config: Config, repository: RepositoryConfig) -> str | None:
    """Return what the next rotation does about a change of ``algorithm`` (None: nothing)."""
    # here, as in the jws views below: the JWS model and store, a jws repository's only
    from keysyncd.core.jws import JwsState, former_algorithms, migration_notice
    from keysyncd.io.local.jwsstore import JwsStore, store_root

    try:
        pairs = load_state(config.state_dir, repository.name).jws or JwsState()
        scan = JwsStore(store_root(config, repository), repository.algorithm).scan()
    except KeysyncError:
        return None
    former = former_algorithms(pairs, scan.algorithms, repository.algorithm)
    return migration_notice(former, repository.algorithm) if former else None


def jws_status(config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
    """Return ``common_status`` with every node's pairs (digests only) and old keys kept."""
    from keysyncd.core.jws import JwsState, plan_retirement
    from keysyncd.io.local.jwsstore import JwsStore, store_root

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


def jws_plan(config: Config, repository: RepositoryConfig, now: float) -> RepositoryPlan:
    """Return the next rotations and every pair's lifecycle over them."""
    from keysyncd.core.jws import JwsState

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
