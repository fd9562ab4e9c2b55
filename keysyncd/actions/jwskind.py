"""The JWS model's implementation of ``keysyncd.actions.operations.Kind`` (one key pair per
node): each operation delegates to the module that does it.

The action modules are imported when an action runs, not with this module: ``status``,
``plan`` and ``check-config`` reach the kinds without loading the SSH library.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keysyncd.actions import jwsinspect
from keysyncd.actions.inspect import RepositoryPlan
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core import jws as model
from keysyncd.core import jwslife
from keysyncd.core.kinds import JWS
from keysyncd.core.vocabulary import Action
from keysyncd.io.local.jwsstore import store_root

if TYPE_CHECKING:
    from keysyncd.actions.context import ActionResult, Run
    from keysyncd.actions.jwsload import Keys
    from keysyncd.core.adoption import Adopted
    from keysyncd.core.clock import ClockCheck
    from keysyncd.core.jwsplan import JwsExpected, JwsNodePlan, JwsView
    from keysyncd.io.remote.jwsfleet import JwsFleet

PAIRED = frozenset({Action.ROTATE, Action.INIT})  # actions that give every node a new pair


class JwsKind:
    """Each node signs with its own pair (``keysyncd.core.kinds.JwsModel``)."""

    def load(self, run: Run) -> Keys:
        from keysyncd.actions import jwsload

        return jwsload.load(run)

    def recover(self, run: Run, loaded: Keys) -> Keys:
        from keysyncd.actions import jwsload

        jwsload.tidy_store(loaded)  # what the journal does not name: a crash's leftovers
        return loaded

    def plan(self, run: Run, keys: Keys, action: Action, now: float) -> jwslife.PairPlan:
        retention = run.repository.token_expiration + run.repository.allow_expired_window
        rotate = action in PAIRED
        return jwslife.plan_action(keys.pairs, run.node_names, rotate, retention, now)

    def read_node(self, fleet: JwsFleet, name: str, expected: Any) -> JwsView:
        return fleet.read_view(name)  # every entry: keystone reads them all, expected or not

    def diff(self, fleet: JwsFleet, expected: JwsExpected, view: JwsView) -> JwsNodePlan:
        return JWS.diff(expected, view, fleet.owner[0], fleet.user)

    def apply_phase(
        self, fleet: JwsFleet, phase: int, keys: tuple[Mapping[str, bytes], Mapping[str, bytes]]
    ) -> None:
        """``keys``: (every public key by name, the private keys the gate lets through by
        node; phase 1 installs none)."""
        public, private = keys
        if phase == 1:
            fleet.phase1(public)
        else:
            fleet.phase2(public, private)

    def promote(self, run: Run, keys: Keys, plan: Collection[str], clock: ClockCheck) -> Keys:
        """``plan``: the nodes verified holding their new private key (they sign from now)."""
        now = run.clock()
        for node in sorted(plan):
            keys.pairs = model.installed(keys.pairs, node, now)
        return keys

    def status(self, config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
        return jwsinspect.status(config, repository, now)

    def lifecycles(
        self, config: Config, repository: RepositoryConfig, now: float
    ) -> RepositoryPlan:
        return jwsinspect.plan(config, repository, now)

    def rotate(self, run: Run, dry_run: bool, force: bool) -> ActionResult:
        from keysyncd.actions import jws

        options = jws.Options(rotate=True, force=force, dry_run=dry_run)
        return jws.converge(run, options, Action.ROTATE)

    def sync(self, run: Run, node: str | None, force: bool, dry_run: bool) -> ActionResult:
        from keysyncd.actions import jws

        options = jws.Options(force=force, dry_run=dry_run, node=node)
        return jws.converge(run, options, Action.SYNC)

    def verify(self, run: Run, node: str | None) -> ActionResult:
        from keysyncd.actions import jws

        return jws.verify(run, node)

    def init(self, run: Run, dry_run: bool) -> ActionResult:
        from keysyncd.actions import jws

        return jws.converge(run, jws.Options(init=True, dry_run=dry_run), Action.INIT)

    def adopt(self, run: Run, source: str) -> Adopted:
        from keysyncd.actions import jws

        return jws.adopt(run, source)

    def check_local(self, run: Run) -> ActionResult | None:
        from keysyncd.actions import jwsdrift

        return jwsdrift.check_store(run)

    def check_fleet(self, run: Run) -> ActionResult | None:
        from keysyncd.actions import jwsdrift

        return jwsdrift.check_nodes(run)

    def watched(self, config: Config, repository: RepositoryConfig) -> Path:
        return store_root(config, repository)  # path describes the nodes; the keys are here
