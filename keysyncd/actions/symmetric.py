"""The symmetric model's implementation of ``keysyncd.actions.operations.Kind`` (fernet and
credential keys): each operation delegates to the module that does it.

The action modules are imported when an action runs, not with this module: ``status``,
``plan`` and ``check-config`` reach the kinds without loading the SSH library.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keysyncd.actions import inspect
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.kinds import SYMMETRIC
from keysyncd.core.vocabulary import Action, NodeStatus

if TYPE_CHECKING:
    from keysyncd.actions.context import ActionResult, Run
    from keysyncd.actions.local import Local, Recovered
    from keysyncd.core.adoption import Adopted
    from keysyncd.core.clock import ClockCheck
    from keysyncd.core.keyring import KeySet
    from keysyncd.core.nodeplan import NodePlan
    from keysyncd.core.nodeview import NodeView
    from keysyncd.core.policy import RotationPlan
    from keysyncd.io.remote.fleet import FleetAction


class SymmetricKind:
    """Every node holds the controller's key set (``keysyncd.core.kinds.SymmetricModel``)."""

    def load(self, run: Run) -> Local:
        from keysyncd.actions import local

        return local.load_local(run)

    def recover(self, run: Run, loaded: Local) -> Recovered:
        from keysyncd.actions import local

        return local.recover(run, loaded)

    def plan(self, run: Run, keys: Recovered, action: Action, now: float) -> RotationPlan | None:
        """Return the rotation plan for a rotation (other actions push the keys as they are)."""
        if action != Action.ROTATE:
            return None
        policy = run.repository.policy()
        return SYMMETRIC.plan_rotation(keys.keyset.indices, keys.state.history, policy, now)

    def read_node(self, fleet: FleetAction, name: str, expected: dict[int, str]) -> NodeView:
        return fleet._read_view(fleet.sessions[name], expected)

    def diff(self, fleet: FleetAction, expected: dict[int, str], view: NodeView) -> NodePlan:
        return SYMMETRIC.diff(expected, view, fleet.ownership)

    def apply_phase(self, fleet: FleetAction, phase: int, keys: KeySet) -> None:
        """Phase 1 adds the missing keys, phase 2 replaces and deletes (``fleet.push`` runs
        both behind its barrier)."""
        step = fleet._phase1 if phase == 1 else fleet._phase2
        if phase == 1:
            fleet.tidy()
        pending = [n for n in fleet.healthy() if fleet.results[n].status == NodeStatus.DIFFERS]
        fleet._each(f"phase {phase}", pending, lambda name: step(name, keys))

    def promote(
        self, run: Run, keys: Recovered, plan: RotationPlan, clock: ClockCheck
    ) -> tuple[KeySet, Any]:
        from keysyncd.actions import local

        repository = local.open_repository(run.repository)
        return local.rotate_local(run, repository, keys.keyset, keys.state, plan, clock)

    def status(self, config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
        return inspect.repository_status(config, repository, now)

    def lifecycles(
        self, config: Config, repository: RepositoryConfig, now: float
    ) -> inspect.RepositoryPlan:
        return inspect.repository_plan(config, repository, now)

    def rotate(self, run: Run, dry_run: bool, force: bool) -> ActionResult:
        from keysyncd.actions import rotate

        return rotate.rotate_repository(run, dry_run, force)

    def sync(self, run: Run, node: str | None, force: bool, dry_run: bool) -> ActionResult:
        from keysyncd.actions import distribute

        return distribute.sync_repository(run, node, force, dry_run)

    def verify(self, run: Run, node: str | None) -> ActionResult:
        from keysyncd.actions import distribute

        return distribute.verify_repository(run, node)

    def init(self, run: Run, dry_run: bool) -> ActionResult:
        from keysyncd.actions import bootstrap

        return bootstrap.init_repository(run, dry_run)

    def adopt(self, run: Run, source: str) -> Adopted:
        from keysyncd.actions import bootstrap

        return bootstrap.adopt_repository(run, source)

    def check_local(self, run: Run) -> ActionResult | None:
        from keysyncd.actions import drift

        return drift.check_local(run)

    def check_fleet(self, run: Run) -> ActionResult | None:
        from keysyncd.actions import drift

        return drift.check_fleet(run, random.Random())  # noqa: S311 - jitter, not secrets

    def watched(self, config: Config, repository: RepositoryConfig) -> Path:
        return repository.path
