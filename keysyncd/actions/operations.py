"""Each kind's actions behind one protocol (``Kind``), bound to the kinds' models in one
place (``IMPLEMENTATIONS``): fernet and credential keys share ``keysyncd.actions.symmetric``,
jws key pairs have ``keysyncd.actions.jwskind``. The command line and the daemon call the
functions below; a kind's write actions run its ``steps`` in ``keysyncd.actions.shell``, and
``adopt`` its ``adoption`` steps there.

A kind is registered once, with its pure planners, in ``keysyncd.core.kinds``; its model
picks its implementation here. ``tests/unit/test_kind_seam.py`` proves every registered
kind has one that implements every operation of ``Kind`` and of the shell's ``Steps`` and
``Adoption``.
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
    from keysyncd.actions.shell import Adoption, Steps
    from keysyncd.core.adoption import Adopted


class Kind(Protocol):
    """What every kind does: what the command line and the daemon call, and the class of
    its steps in the action shell."""

    def steps(self) -> type[Steps]:
        """Return the class of this kind's steps in ``keysyncd.actions.shell.execute``."""

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

    def adoption(self) -> type[Adoption]:
        """Return the class of this kind's steps in ``keysyncd.actions.shell.adopt``."""

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


def adopt(run: Run, source: str, dry_run: bool = False) -> Adopted:
    """Take over the keys the nodes hold; return what was adopted (``dry_run``: would be,
    writing nothing) and what the operator must know (keys not adopted, nodes that differ).
    Raise UsageError for an unknown node."""
    from keysyncd.actions import shell  # loads the SSH library: not for status or plan

    run.config.node(source)
    return shell.adopt(run, of(run.repository).adoption(), source, dry_run)


def check_local(run: Run) -> ActionResult | None:
    """The controller's side of drift (None: nothing happened)."""
    return of(run.repository).check_local(run)


def check_fleet(run: Run) -> ActionResult | None:
    """The nodes' side of drift (None: nothing to check)."""
    return of(run.repository).check_fleet(run)


def watched_path(config: Config, repository: RepositoryConfig) -> Path:
    """Return the directory the daemon's local watch observes for ``repository``."""
    return of(repository).watched(config, repository)
