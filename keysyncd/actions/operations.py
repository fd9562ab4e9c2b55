"""Each kind's actions behind one interface: fernet and credential keys share the symmetric
actions, ``jws`` key pairs have their own (a small strategy table, not ``if kind`` chains).
The command line and the daemon call these.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keysyncd.actions import bootstrap, distribute, drift, inspect, jws, jwsdrift, jwsinspect
from keysyncd.actions import rotate as symmetric_rotate
from keysyncd.actions.context import ActionResult, Run
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.adoption import Adopted
from keysyncd.core.vocabulary import Action


@dataclass(frozen=True)
class Operations:
    """What a kind does for each action (see the module-level functions below)."""

    rotate: Callable[[Run, bool, bool], ActionResult]  # (run, dry_run, force)
    sync: Callable[[Run, str | None, bool, bool], ActionResult]  # (run, node, force, dry_run)
    verify: Callable[[Run, str | None], ActionResult]  # (run, node)
    init: Callable[[Run, bool], ActionResult]  # (run, dry_run)
    adopt: Callable[[Run, str], Adopted]  # (run, source node) -> what was adopted
    check_local: Callable[[Run], ActionResult | None]
    check_fleet: Callable[[Run], ActionResult | None]
    status: Callable[[Config, RepositoryConfig, float], dict[str, Any]]
    plan: Callable[[Config, RepositoryConfig, float], Any]
    watched: Callable[[Config, RepositoryConfig], Path]  # what the local watch observes


SYMMETRIC = Operations(
    rotate=lambda run, dry_run, force: symmetric_rotate.rotate_repository(run, dry_run, force),
    sync=lambda run, node, force, dry_run: distribute.sync_repository(run, node, force, dry_run),
    verify=lambda run, node: distribute.verify_repository(run, node),
    init=lambda run, dry_run: bootstrap.init_repository(run, dry_run),
    adopt=bootstrap.adopt_repository,
    check_local=drift.check_local,
    check_fleet=lambda run: drift.check_fleet(run, random.Random()),  # noqa: S311 - jitter
    status=inspect.repository_status,
    plan=inspect.repository_plan,
    watched=lambda config, repository: repository.path,
)
JWS = Operations(
    rotate=lambda run, dry_run, force: jws.converge(
        run, jws.Options(rotate=True, force=force, dry_run=dry_run), Action.ROTATE
    ),
    sync=lambda run, node, force, dry_run: jws.converge(
        run, jws.Options(force=force, dry_run=dry_run, node=node), Action.SYNC
    ),
    verify=jws.verify,
    init=lambda run, dry_run: jws.converge(
        run, jws.Options(init=True, dry_run=dry_run), Action.INIT
    ),
    adopt=jws.adopt,
    check_local=jwsdrift.check_store,
    check_fleet=jwsdrift.check_nodes,
    status=jwsinspect.status,
    plan=jwsinspect.plan,
    watched=jws.store_root,  # path describes the nodes; the controller's keys are here
)
BY_KIND = {"fernet": SYMMETRIC, "credential": SYMMETRIC, "jws": JWS}


def of(repository: RepositoryConfig) -> Operations:
    """Return the operations of ``repository``'s kind."""
    return BY_KIND[repository.kind]


def rotate(run: Run, dry_run: bool = False, force: bool = False) -> ActionResult:
    """Rotate ``run.repository`` (see its kind's module); the caller holds the lock."""
    return of(run.repository).rotate(run, dry_run, force)


def sync(
    run: Run, node: str | None = None, force: bool = False, dry_run: bool = False
) -> ActionResult:
    """Push ``run.repository`` to every node (or one) and verify it by read-back."""
    return of(run.repository).sync(run, node, force, dry_run)


def verify(run: Run, node: str | None = None) -> ActionResult:
    """Compare every node (or one) with the controller; change no key."""
    return of(run.repository).verify(run, node)


def init(run: Run, dry_run: bool = False) -> ActionResult:
    """Create the repository's first keys and push them (refusing where keys exist)."""
    return of(run.repository).init(run, dry_run)


def adopt(run: Run, source: str) -> Adopted:
    """Take over the keys the nodes hold; return what was adopted and what the operator must
    know (keys not adopted, nodes that differ). Raise UsageError for an unknown node."""
    run.config.node(source)
    return of(run.repository).adopt(run, source)


def check_local(run: Run) -> ActionResult | None:
    """The controller's side of drift (None: nothing happened)."""
    return of(run.repository).check_local(run)


def check_fleet(run: Run) -> ActionResult | None:
    """The nodes' side of drift (None: nothing to check)."""
    return of(run.repository).check_fleet(run)


def watched_path(config: Config, repository: RepositoryConfig) -> Path:
    """Return the directory the daemon's local watch observes for ``repository``."""
    return of(repository).watched(config, repository)
