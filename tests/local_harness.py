"""The controller's repository and journal, driven the way actions drive them, with a clock.

A real config (one repository ``r`` under ``root``), a real Run whose clock is ``now``, the
real local actions (load, recover, rotate, retire) and the journal saved in ``root/state``.
"""

from __future__ import annotations

from pathlib import Path

from keysyncd.actions.context import Run, check_clock, write_ahead
from keysyncd.actions.inspect import open_repository
from keysyncd.actions.local import (
    initialise,
    load_local,
    recover,
    retire_due,
    rotate_local,
)
from keysyncd.config import parse_config
from keysyncd.core import journal
from keysyncd.core.journal import RepositoryState
from keysyncd.core.keyring import KeySet
from keysyncd.core.policy import Policy, RotationPlan, plan_rotation
from keysyncd.core.vocabulary import Trigger
from keysyncd.io.local.repository import Repository
from keysyncd.io.local.state import load_state


class LocalHarness:
    """One local repository ``root/keys`` with its journal, at the time ``now``."""

    def __init__(
        self,
        root: Path,
        policy: Policy,
        now: float,
        keys: Path | None = None,
        owner: int | None = None,
    ) -> None:
        self.policy = policy
        self.now = now
        repository = {
            "name": "r",
            "path": str(keys or root / "keys"),
            "max_active_keys": policy.max_active_keys,
            "token_expiration": policy.token_expiration,
            "allow_expired_window": policy.allow_expired_window,
        }
        if owner is not None:
            repository |= {"owner": owner, "group": owner}
        document = {
            "state_dir": str(root / "state"),
            "report_dir": str(root / "reports"),
            "repositories": [repository],
        }
        self.config = parse_config(document, root / "config.yaml")
        self.run = Run(self.config, self.config.repositories[0], Trigger.CLI, clock=self.clock)
        self.repository: Repository = open_repository(self.config.repositories[0])

    def clock(self) -> float:
        return self.now

    def state(self) -> RepositoryState:
        """Return the journal as saved."""
        return load_state(self.config.state_dir, "r")

    def save(self, state: RepositoryState) -> None:
        write_ahead(self.run, state)

    def init(self) -> RepositoryState:
        """Create {0, 1}, as ``init`` does; return the saved journal."""
        state = initialise(self.run, self.repository, self.state())
        self.save(state)
        return state

    def prepare(self) -> tuple[KeySet, RepositoryState, bool]:
        """Load, recover and reconcile, as every action starts; return (keys, journal,
        whether the keys changed outside keysyncd)."""
        keyset, state = recover(self.run, load_local(self.run)).valid()
        state, foreign = journal.reconcile(state, keyset.digests(), self.now)
        return keyset, state, foreign

    def rotate(self) -> tuple[RotationPlan, KeySet, RepositoryState]:
        """Rotate once; return the plan, the new keys and the journal (saved)."""
        keyset, state, _ = self.prepare()
        plan = plan_rotation(keyset.indices, state.history, self.policy, self.now)
        clock = check_clock(self.run, state, None)
        keyset, state = rotate_local(self.run, self.repository, keyset, state, plan, clock)
        return plan, keyset, state

    def retire_due(self) -> RepositoryState:
        """Retire what is now safe to retire; return the journal (saved)."""
        keyset, state, _ = self.prepare()
        clock = check_clock(self.run, state, None)
        _, state, _ = retire_due(self.run, self.repository, keyset, state, clock)
        self.save(state)
        return state
