"""Each kind's actions behind one protocol (``Kind``), bound to the kinds' models in one
place (``IMPLEMENTATIONS``): fernet and credential keys share the symmetric model's
implementation (``keysyncd.actions.symmetric``), jws key pairs have their own
(``keysyncd.actions.jwskind``). The command line and the daemon call the functions below.

A kind is registered once, in ``keysyncd.core.kinds``; its model picks its implementation
here. ``tests/unit/test_kind_seam.py`` proves every registered kind has one that implements
every operation of ``Kind``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from keysyncd.actions.jwskind import JwsKind
from keysyncd.actions.symmetric import SymmetricKind
from keysyncd.config import Config, RepositoryConfig

if TYPE_CHECKING:
    from keysyncd.actions.context import ActionResult, Run
    from keysyncd.actions.inspect import RepositoryPlan
    from keysyncd.core.adoption import Adopted
    from keysyncd.core.clock import ClockCheck
    from keysyncd.core.vocabulary import Action


class Kind(Protocol):
    """What every kind does. The steps of an action (``load`` to ``promote``) are the
    model's own values (a symmetric key set, a JWS store and journal), hence ``Any``."""

    def load(self, run: Run) -> Any:
        """Return the controller's keys and journal as found, changing nothing."""

    def recover(self, run: Run, loaded: Any) -> Any:
        """Finish or undo what a crash left (the caller holds the lock); return the keys."""

    def plan(self, run: Run, keys: Any, action: Action, now: float) -> Any:
        """Return the pure plan of ``action`` on ``keys`` at ``now``."""

    def read_node(self, fleet: Any, name: str, expected: Any) -> Any:
        """Return what node ``name`` holds (its view), read over ``fleet``'s session."""

    def diff(self, fleet: Any, expected: Any, view: Any) -> Any:
        """Return the pure plan turning a node's ``view`` into ``expected``."""

    def apply_phase(self, fleet: Any, phase: int, keys: Any) -> None:
        """Apply phase 1 (add) or 2 (replace, delete, install) on every differing node."""

    def promote(self, run: Run, keys: Any, plan: Any, clock: ClockCheck) -> Any:
        """Make the plan's new keys the ones in use on the controller; return the keys."""

    def status(self, config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
        """Return the JSON-ready status (``keysyncd.actions.inspect.common_status``)."""

    def lifecycles(
        self, config: Config, repository: RepositoryConfig, now: float
    ) -> RepositoryPlan:
        """Return what ``plan`` shows: the next rotations and every key's lifecycle."""

    def rotate(self, run: Run, dry_run: bool, force: bool) -> ActionResult:
        """Rotate ``run.repository`` (the caller holds the lock unless ``dry_run``)."""

    def sync(self, run: Run, node: str | None, force: bool, dry_run: bool) -> ActionResult:
        """Push the controller's keys to every node (or one) and verify them."""

    def verify(self, run: Run, node: str | None) -> ActionResult:
        """Compare every node (or one) with the controller; change no key."""

    def init(self, run: Run, dry_run: bool) -> ActionResult:
        """Create the first keys and push them (refusing where keys exist)."""

    def adopt(self, run: Run, source: str) -> Adopted:
        """Take over the keys node ``source`` holds; return what was adopted."""

    def check_local(self, run: Run) -> ActionResult | None:
        """The controller's side of drift (None: nothing happened)."""

    def check_fleet(self, run: Run) -> ActionResult | None:
        """The nodes' side of drift (None: nothing to check)."""

    def watched(self, config: Config, repository: RepositoryConfig) -> Path:
        """Return the directory the daemon's local watch observes."""


# The one binding: a core model's name -> its implementation.
IMPLEMENTATIONS: dict[str, Kind] = {"symmetric": SymmetricKind(), "jws": JwsKind()}


def of(repository: RepositoryConfig) -> Kind:
    """Return the implementation of ``repository``'s kind."""
    return IMPLEMENTATIONS[repository.key_kind.model.name]


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
