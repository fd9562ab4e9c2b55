"""A JWS repository on a real 3-node fleet for the JWS integration tests: ``World`` (paths,
config), ``act`` (one operation under the lock, as the CLI runs it) and the ``world``
fixture (registered in tests/integration/conftest.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from keysyncd.actions.context import ActionResult, Run
from keysyncd.config import Config, load_config
from keysyncd.core.vocabulary import Trigger
from keysyncd.io.local.lock import exclusive
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet

RETENTION = 2  # token_expiration 2 s + allow_expired_window 0


@dataclass
class World:
    fleet: Fleet
    path: Path

    @property
    def config(self) -> Config:
        return load_config(self.path)

    @property
    def store(self) -> Path:
        return self.path.parent / "state" / "jws" / "fernet-tokens"

    def private(self, node: str) -> Path:
        return self.fleet.node(node).directory / "private"

    def public(self, node: str) -> Path:
        return self.fleet.node(node).directory / "public"

    def private_digest(self, node: str) -> str:
        return hashlib.sha256((self.private(node) / "private.pem").read_bytes()).hexdigest()


def act(
    world: World,
    operation: Callable[..., ActionResult],
    *args: object,
    progress: Callable[[str, str, int, int], None] | None = None,
) -> ActionResult:
    """Run one operation on the repository under the lock, as the CLI does."""
    config = world.config
    run = Run(config, config.repositories[0], Trigger.CLI, progress=progress)
    with exclusive(config.state_dir, "test"):
        return operation(run, *args)


def jws_config(fleet: Fleet, root: Path) -> Path:
    """Write the config of one JWS repository over ``fleet`` (short SSH timeouts) under
    ``root``; return its path."""
    path = fleet_config(
        fleet,
        root,
        repository={"kind": "jws", "token_expiration": RETENTION, "allow_expired_window": 0},
    )
    document = yaml.safe_load(path.read_text())
    document["repositories"][0].pop("max_active_keys")
    document["ssh"] |= {"connect_timeout": 3, "operation_timeout": 3}
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def world(make_fleet: Callable[..., Fleet], tmp_path: Path) -> World:
    fleet = make_fleet(3)
    return World(fleet, jws_config(fleet, tmp_path / "ctl"))
