"""The JWS model's kind (one key pair per node; ``keysyncd.core.kinds``): each operation of
``keysyncd.actions.operations.Kind`` is the module that does it, imported when it runs so
that ``status``, ``plan`` and ``check-config`` do not load the SSH library."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from keysyncd.actions import jwsinspect
from keysyncd.actions.inspect import RepositoryPlan
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.vocabulary import Action
from keysyncd.io.local.jwsstore import store_root

if TYPE_CHECKING:
    from keysyncd.actions.context import ActionResult, Run
    from keysyncd.actions.shell import Adoption, Steps


class JwsKind:
    """Each node signs with its own pair; init, sync and rotate are one converge."""

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
        return jwsinspect.status(config, repository, now)

    def lifecycles(
        self, config: Config, repository: RepositoryConfig, now: float
    ) -> RepositoryPlan:
        return jwsinspect.plan(config, repository, now)

    def watched(self, config: Config, repository: RepositoryConfig) -> Path:
        return store_root(config, repository)  # path describes the nodes; the keys are here
