"""Fixtures for integration tests: fleets of real OpenSSH servers (keysyncd.testing.fleet).

``make_fleet(count, sftp_only=True, **kwargs)`` starts a fleet under ``tmp_path``; ``fleet`` (3
nodes) and ``fleet5`` (5 nodes) are ready-made. Every fleet is stopped when the test ends,
whatever happened. ``hostile_world`` is a 1-node fleet with an initialised config for the
hostile-node tests. Tests using these fixtures get the ``fleet`` marker automatically.
``traversable_root`` is a directory for node directories that an owner other than root
must reach (tests/traversable.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet, FleetUnsupported, find_sshd
from tests.hostile_sftp import CONNECT_TIMEOUT, OPERATION_TIMEOUT
from tests.jws_world import world as jws_world_fixture
from tests.traversable import traversable_root as traversable_root_fixture

FLEET_FIXTURES = {"fleet", "fleet5", "make_fleet"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if FLEET_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.fleet)


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """Return a factory starting fleets under tmp_path; all are stopped at teardown."""
    try:
        find_sshd()
    except FleetUnsupported as exc:
        pytest.skip(str(exc))
    fleets: list[Fleet] = []

    def factory(count: int = 3, sftp_only: bool = True, **kwargs: Any) -> Fleet:
        fleet = Fleet(tmp_path / f"fleet{len(fleets)}", count, sftp_only=sftp_only, **kwargs)
        fleets.append(fleet)
        return fleet.start()

    yield factory
    for fleet in reversed(fleets):
        fleet.stop()


@pytest.fixture
def fleet(make_fleet: Callable[..., Fleet]) -> Fleet:
    """Return a started 3-node SFTP-only fleet (node1..node3)."""
    return make_fleet(3)


@pytest.fixture
def fleet5(make_fleet: Callable[..., Fleet]) -> Fleet:
    """Return a started 5-node SFTP-only fleet (node1..node5)."""
    return make_fleet(5)


@pytest.fixture
def hostile_world(make_fleet: Callable[..., Fleet], tmp_path: Path) -> Iterator[tuple[Fleet, Path]]:
    """Return (a started 1-node fleet, its initialised config with short SSH timeouts), for the
    hostile-node tests to add their node to (tests/hostile_sftp.py)."""
    fleet = make_fleet(1)
    config = fleet_config(fleet, tmp_path / "ctl")
    document = yaml.safe_load(config.read_text())
    document["ssh"] |= {"connect_timeout": CONNECT_TIMEOUT, "operation_timeout": OPERATION_TIMEOUT}
    config.write_text(yaml.safe_dump(document))
    assert main(["-c", str(config), "init"]) == 0
    yield fleet, config


# the jws tests' fleet (tests/jws_world.py), for every module that names it
world = jws_world_fixture
# node directories an owner other than root can reach (tests/traversable.py)
traversable_root = traversable_root_fixture
