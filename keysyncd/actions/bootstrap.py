"""Create a repository (``init``) or take one over from a node (``adopt``), under the lock."""

from __future__ import annotations

import time

from keysyncd.actions.distribute import (
    ActionResult,
    finish_report,
    push_keyset,
    record_nodes,
    start_fleet,
)
from keysyncd.actions.local import init_local, open_repository, reconcile
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.keyring import Key, KeySet
from keysyncd.core.view import MAX_KEY_FILE, entry_problem, show_name
from keysyncd.errors import KeysyncError
from keysyncd.io.fleet import Progress
from keysyncd.io.state import load_state, save_state


def init_repository(
    config: Config, repository: RepositoryConfig, trigger: str, progress: Progress | None = None
) -> ActionResult:
    """Create {0, 1} locally and push it to every node; return what happened.

    Raise KeysyncError, before writing anything, if the local repository or any
    reachable node already holds keys: re-bootstrapping a live cluster is an outage.
    """
    started = time.time()
    repo = open_repository(repository)
    if repo.holds_keys():
        raise KeysyncError(
            f"{repository.name}: refusing to initialise {repository.path}: it already holds keys"
        )
    fleet = start_fleet(config, repository, list(config.nodes), progress) if config.nodes else None
    try:
        if fleet is not None:
            fleet.inspect({})
            holding = [n for n, r in fleet.results.items() if r.view and r.view.keystone.ids]
            if holding:
                names = ", ".join(sorted(holding))
                raise KeysyncError(
                    f"{repository.name}: refusing to initialise: node(s) {names} already hold "
                    "keys; use 'keysyncd adopt --from NODE' to take them over"
                )
        state = init_local(repo, load_state(config.state_dir, repository.name), started)
        save_state(config.state_dir, state)
        if fleet is not None:
            fleet.reset()
            push_keyset(fleet, repo.load())
    finally:
        results = fleet.finish() if fleet is not None else {}
    state = record_nodes(state, results, time.time())
    report = finish_report(config, repository, "init", "cli", started, state, results)
    return ActionResult(report, results)


def adopt_repository(
    config: Config, repository: RepositoryConfig, node_name: str, progress: Progress | None = None
) -> KeySet:
    """Import ``node_name``'s keys as the controller's repository; return them.

    Adopted keys count as demoted now, so none is retired before it is safe.
    Raise KeysyncError if the local repository already holds keys or the node's
    keys are unreachable or invalid.
    """
    now = time.time()
    repo = open_repository(repository)
    if repo.holds_keys():
        raise KeysyncError(
            f"{repository.name}: refusing to adopt: {repository.path} already holds keys"
        )
    fleet = start_fleet(config, repository, [config.node(node_name)], progress)
    try:
        result = fleet.results[node_name]
        if result.error is not None:
            raise KeysyncError(f"cannot adopt from {result.error}")
        session = fleet.sessions[node_name]
        listing = session.list_directory()
        # Only what keysyncd itself would write can be adopted: anything else at a key name
        # (``099``, a symlink, a FIFO) is for the operator to explain first.
        odd = [
            f"{show_name(entry.name)} ({problem})"
            for entry in listing.entries
            if (problem := entry_problem(entry) or _size_problem(entry.size))
        ]
        if odd:
            raise KeysyncError(
                f"cannot adopt from node {node_name}: not keys keysyncd can take over: "
                + ", ".join(odd)
            )
        materials = {int(e.name): session.read(e.name) for e in listing.entries}
    finally:
        fleet.finish()
    keyset = KeySet.of(Key(index, material) for index, material in materials.items())
    problems = [f"{i}: {p}" for i, m in materials.items() if (p := repo.kind.problem(m))]
    problems += keyset.problems()
    if problems:
        raise KeysyncError(f"cannot adopt from node {node_name}: " + "; ".join(problems))
    order = (*sorted((i for i in materials if i > 0), reverse=True), 0)
    repo.write_keys(materials, order)
    state, _ = reconcile(repo.load(), load_state(config.state_dir, repository.name), now)
    save_state(config.state_dir, state)
    return keyset


def _size_problem(size: int) -> str | None:
    if size == 0:
        return "empty"
    return f"larger than {MAX_KEY_FILE} bytes" if size > MAX_KEY_FILE else None
