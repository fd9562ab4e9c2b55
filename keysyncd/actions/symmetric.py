"""The symmetric model's kind (fernet and credential keys; ``keysyncd.core.kinds``): each
operation of ``keysyncd.actions.operations.Kind`` is the module that does it, imported when
it runs so that ``status``, ``plan`` and ``check-config`` do not load the SSH library."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from keysyncd.actions import inspect
from keysyncd.config import Config, RepositoryConfig

if TYPE_CHECKING:
    from keysyncd.actions.context import ActionResult, Run
    from keysyncd.actions.shell import Adoption, Steps


class SymmetricKind:
    """Every node holds the controller's key set."""

    def steps(self) -> type[Steps]:
        from keysyncd.actions.rotate import _Symmetric

        return _Symmetric

    def rotate(self, run: Run, dry_run: bool, force: bool) -> ActionResult:
        from keysyncd.actions.rotate import rotate_repository

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
    ) -> inspect.RepositoryPlan:
        return inspect.repository_plan(config, repository, now)

    def watched(self, config: Config, repository: RepositoryConfig) -> Path:
        return repository.path
