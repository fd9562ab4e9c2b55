"""Each kind's actions behind one protocol (``Kind``), bound to the kinds' models in one
place (``IMPLEMENTATIONS``); the command line and the daemon call the functions below and
run ``JOBS`` (each repository on its own: one failing never stops the next). Each operation
imports the module that does it when it runs, so that ``status``, ``plan`` and
``check-config`` do not load the SSH library. ``tests/unit/test_kind_seam.py`` proves every
kind registered in ``keysyncd.core.kinds`` implements ``Kind`` and the shell's ``Steps`` and
``Adoption`` (``adopt`` runs a kind's ``adoption`` steps in the shell)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from keysyncd.actions import inspect
from keysyncd.actions.inspect import RepositoryPlan
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.vocabulary import Action, Outcome
from keysyncd.errors import KeysyncError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from keysyncd.actions.context import ActionResult, Run
    from keysyncd.actions.shell import Adoption, Steps
    from keysyncd.core.adoption import Adopted


class Kind(Protocol):
    """What every kind does (the functions below), and its steps in the action shell."""

    def steps(self) -> type[Steps]: ...
    def status(
        self, config: Config, repository: RepositoryConfig, now: float
    ) -> dict[str, Any]: ...
    def lifecycles(
        self, config: Config, repository: RepositoryConfig, now: float
    ) -> RepositoryPlan: ...
    def rotate(self, run: Run, dry_run: bool, force: bool) -> ActionResult: ...
    def sync(self, run: Run, node: str | None, force: bool, dry_run: bool) -> ActionResult: ...
    def verify(self, run: Run, node: str | None) -> ActionResult: ...
    def init(self, run: Run, dry_run: bool) -> ActionResult: ...
    def adoption(self) -> type[Adoption]: ...
    def check_local(self, run: Run) -> ActionResult | None: ...
    def check_fleet(self, run: Run) -> ActionResult | None: ...
    def watched(self, config: Config, repository: RepositoryConfig) -> Path: ...


class SymmetricKind:
    """Fernet and credential keys: every node holds the controller's key set."""

    def steps(self) -> type[Steps]:
        from keysyncd.actions.distribute import _Symmetric

        return _Symmetric

    def rotate(self, run: Run, dry_run: bool, force: bool) -> ActionResult:
        from keysyncd.actions.distribute import rotate_repository

        return rotate_repository(run, dry_run, force)

    def sync(self, run: Run, node: str | None, force: bool, dry_run: bool) -> ActionResult:
        from keysyncd.actions.distribute import sync_repository

        return sync_repository(run, node, force, dry_run)

    def verify(self, run: Run, node: str | None) -> ActionResult:
        from keysyncd.actions.drift import verify_repository

        return verify_repository(run, node)

    def init(self, run: Run, dry_run: bool) -> ActionResult:
        from keysyncd.actions.bootstrap import init_repository

        return init_repository(run, dry_run)

    def adoption(self) -> type[Adoption]:
        from keysyncd.actions.bootstrap import Adopt

        return Adopt

    def check_local(self, run: Run) -> ActionResult | None:
        from keysyncd.actions.drift import check_local

        return check_local(run)

    def check_fleet(self, run: Run) -> ActionResult | None:
        from keysyncd.actions.drift import check_fleet

        return check_fleet(run)

    def status(self, config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
        return inspect.repository_status(config, repository, now)

    def lifecycles(
        self, config: Config, repository: RepositoryConfig, now: float
    ) -> RepositoryPlan:
        return inspect.repository_plan(config, repository, now)

    def watched(self, config: Config, repository: RepositoryConfig) -> Path:
        return repository.path


class JwsKind:
    """keystone's JWS key pairs: each node signs with its own (``keysyncd.actions.jws``)."""

    def steps(self) -> type[Steps]:
        from keysyncd.actions.jws import _Jws

        return _Jws

    def rotate(self, run: Run, dry_run: bool, force: bool) -> ActionResult:
        from keysyncd.actions.jws import Options, converge

        return converge(run, Options(rotate=True, force=force, dry_run=dry_run), Action.ROTATE)

    def sync(self, run: Run, node: str | None, force: bool, dry_run: bool) -> ActionResult:
        from keysyncd.actions.jws import Options, converge

        return converge(run, Options(force=force, dry_run=dry_run, node=node), Action.SYNC)

    def verify(self, run: Run, node: str | None) -> ActionResult:
        from keysyncd.actions.jwsread import verify

        return verify(run, node)

    def init(self, run: Run, dry_run: bool) -> ActionResult:
        from keysyncd.actions.jws import Options, converge

        return converge(run, Options(init=True, dry_run=dry_run), Action.INIT)

    def adoption(self) -> type[Adoption]:
        from keysyncd.actions.jwsread import Adopt

        return Adopt

    def check_local(self, run: Run) -> ActionResult | None:
        from keysyncd.actions.jwsdrift import check_store

        return check_store(run)

    def check_fleet(self, run: Run) -> ActionResult | None:
        from keysyncd.actions.jwsdrift import check_nodes

        return check_nodes(run)

    def status(self, config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
        return inspect.jws_status(config, repository, now)

    def lifecycles(
        self, config: Config, repository: RepositoryConfig, now: float
    ) -> RepositoryPlan:
        return inspect.jws_plan(config, repository, now)

    def watched(self, config: Config, repository: RepositoryConfig) -> Path:
        from keysyncd.io.local.jwsstore import store_root  # the JWS store: jws only

        return store_root(config, repository)  # path describes the nodes; the keys are here


# The one binding: a core model's name -> its implementation.
IMPLEMENTATIONS: dict[str, Kind] = {"symmetric": SymmetricKind(), "jws": JwsKind()}


def of(repository: RepositoryConfig) -> Kind:
    """Return the implementation of ``repository``'s kind."""
    return IMPLEMENTATIONS[repository.key_kind.model.name]


def rotate(run: Run, dry_run: bool = False, force: bool = False) -> ActionResult:
    """Rotate ``run.repository`` (see its kind's module); the caller holds the lock. A
    revocation under way is finished first; while it is unfinished nothing rotates."""
    first = None if dry_run else revocation_first(run)
    if first is not None and not first.ok:
        said = "not rotated: the revocation under way must finish first (see above)"
        return replace(first, messages=(*first.messages, said))
    return of(run.repository).rotate(run, dry_run, force)


def sync(
    run: Run, node: str | None = None, force: bool = False, dry_run: bool = False
) -> ActionResult:
    """Push ``run.repository`` to every node (or one) and verify it by read-back; a revocation
    under way is finished instead (a push to every node, the revoked key taken out)."""
    first = None if dry_run else revocation_first(run)
    return first or of(run.repository).sync(run, node, force, dry_run)


def revocation_first(run: Run, nodes_only: bool = False) -> ActionResult | None:
    """Finish the revocation under way in ``run.repository`` (None: there is none, or, for
    ``nodes_only``, the controller still holds its key: ``revoke.finish_unfinished``)."""
    if run.repository.key_kind.pairs_per_node:  # JWS pairs: the nodes are all that is left
        from keysyncd.actions.jwsrevoke import finish_unfinished as finish_pairs

        return finish_pairs(run)
    from keysyncd.actions.revokeall import finish_any  # one key, or --all

    return finish_any(run, nodes_only)


def verify(run: Run, node: str | None = None) -> ActionResult:
    """Compare every node (or one) with the controller; change no key."""
    return of(run.repository).verify(run, node)


def init(run: Run, dry_run: bool = False) -> ActionResult:
    """Create the repository's first keys and push them (refusing where keys exist)."""
    return of(run.repository).init(run, dry_run)


def adopt(run: Run, source: str, dry_run: bool = False) -> Adopted:
    """Take over the keys node ``source`` holds; return what was adopted (``dry_run``: would
    be, writing nothing). Raise UsageError for an unknown node."""
    from keysyncd.actions import shell  # loads the SSH library: not for status or plan

    run.config.node(source)
    return shell.adopt(run, of(run.repository).adoption(), source, dry_run)


def check_local(run: Run) -> ActionResult | None:
    """The controller's side of drift (None: nothing happened)."""
    return of(run.repository).check_local(run)


def check_fleet(run: Run) -> ActionResult | None:
    """The nodes' side of drift (None: nothing to check); a revocation under way is finished
    instead (the daemon's retry of a node that did not answer)."""
    return revocation_first(run, nodes_only=True) or of(run.repository).check_fleet(run)


def watched_path(config: Config, repository: RepositoryConfig) -> Path:
    """Return the directory the daemon's local watch observes for ``repository``."""
    return of(repository).watched(config, repository)


@dataclass(frozen=True)
class RepositoryRun:
    """One repository's part of a command or daemon job: its results or its error."""

    repository: str
    results: tuple[ActionResult, ...] = ()
    error: KeysyncError | None = None

    @property
    def ok(self) -> bool:
        """Return True when it needs no attention."""
        return self.error is None and all(result.ok for result in self.results)

    @property
    def outcome(self) -> str:
        """Return ``ok``, the first outcome that is not, or ``failed`` for an error."""
        if self.error is not None:
            return Outcome.FAILED
        return next((r.outcome for r in self.results if not r.ok), Outcome.OK)

    def summary(self) -> str:
        """Return ``fernet-tokens: ok`` or ``fernet-tokens: failed (why)``."""
        why = f" ({self.error})" if self.error is not None else ""
        return f"{self.repository}: {self.outcome}{why}"


Step: TypeAlias = "Callable[[Run], list[ActionResult | None]]"  # Run: imported when it runs


def each_repository(
    repositories: Iterable[RepositoryConfig],
    make_run: Callable[[RepositoryConfig], Run],
    step: Step,
) -> list[RepositoryRun]:
    """Run ``step`` for every repository; return a RepositoryRun each (KeysyncError: its own)."""
    done = []
    for repository in repositories:
        try:
            found = step(make_run(repository))
        except KeysyncError as error:
            log.debug("%s failed", repository.name, exc_info=True)
            done.append(RepositoryRun(repository.name, error=error))
            continue
        done.append(RepositoryRun(repository.name, tuple(r for r in found if r is not None)))
    return done


def _replaced(run: Run) -> list[ActionResult | None]:
    """The local watch re-armed on a new directory: say so, then check what it holds."""
    from keysyncd.actions.drift import report_replaced

    return [report_replaced(run), check_local(run)]


JOBS: dict[str, Step] = {
    "rotate": lambda run: [rotate(run)],
    # SIGUSR2: push (verified by read-back), then a read-only verify of every node
    "sync": lambda run: [sync(run), verify(run) if run.config.nodes else None],
    # the periodic check: the local repository, then every node (repairing)
    "check": lambda run: [check_local(run), check_fleet(run)],
    "watch": lambda run: [check_local(run)],
    "replaced": _replaced,
}
