"""The fleet state machine (tests/fleet_machine.py) against a REAL 3-node OpenSSH fleet.

Same rules (rotate, rotate --force, sync, stop-node, start-node, advance-clock) and the same
invariants after every step (valid repositories, everyone holds everyone's primary, live tokens
decrypt everywhere, generations never go back), here over paramiko/SFTP to real sshd nodes.
Time is real (``time.time()``); advance-clock adds an offset to the ``now`` given to
``rotate_repository``, and retention is a few seconds so that real time matters too. One fleet
serves the whole module; every example starts from empty node directories and controller.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, run_state_machine_as_test

from keysyncd.config import Config, load_config
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet, FleetUnsupported, find_sshd
from tests.fleet_machine import FleetMachine

pytestmark = pytest.mark.fleet
_examples = itertools.count()
DAY = 86400
_steps = itertools.count()


@pytest.fixture(scope="module")
def module_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Return one started 3-node SFTP-only fleet for the whole module."""
    try:
        find_sshd()
    except FleetUnsupported as exc:
        pytest.skip(str(exc))
    fleet = Fleet(tmp_path_factory.mktemp("stateful-fleet"), 3)
    try:
        yield fleet.start()
    finally:
        fleet.stop()


class RealFleetMachine(FleetMachine):
    """FleetMachine over real sshd nodes: stop/start kill and relaunch a node's sshd."""

    def __init__(self, fleet: Fleet, root: Path) -> None:
        super().__init__()
        self.fleet = fleet
        self.node_names = tuple(node.name for node in fleet.nodes)
        self.root = root / f"example{next(_examples)}"
        fleet.start()  # restart nodes a previous example left stopped
        for node in fleet.nodes:
            for entry in node.directory.iterdir():
                entry.unlink()
            node.directory.chmod(0o700)

    @initialize(
        max_active_keys=st.integers(2, 5),
        token_expiration=st.integers(1, 5),
        allow_expired_window=st.integers(0, 5),
    )
    def init(self, max_active_keys: int, token_expiration: int, allow_expired_window: int) -> None:
        super().init(max_active_keys, token_expiration, allow_expired_window)

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def after_step(self, what: str) -> None:
        next(_steps)
        super().after_step(what)

    def epoch(self) -> float:
        return time.time()

    def node_files(self, name: str) -> dict[str, bytes]:
        directory = self.fleet.node(name).directory
        return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}

    def node_is_up(self, name: str) -> bool:
        return self.fleet.node(name).proc is not None

    def set_node_up(self, name: str, up: bool) -> None:
        if up:
            self.fleet.start_node(name)
        else:
            self.fleet.stop_node(name)

    def make_config(self, repository: dict[str, Any]) -> Config:
        # advance-clock moves the controller's clock alone (the nodes keep this machine's):
        # here it stands for time passing, not for a skew, so the clock guard (tested in
        # tests/integration/test_clock.py) gets a tolerance no run of the machine reaches
        clock = {"max_skew": 10 * DAY}
        return load_config(fleet_config(self.fleet, self.root, repository=repository, clock=clock))


# 30 examples of up to 20 steps: about 500 real rotations, syncs and node stops/starts with
# every invariant checked after each step (about 70 s here; the count is printed).
EXAMPLES, STEPS = 30, 20


def test_fleet_state_machine_on_a_real_fleet(module_fleet: Fleet, tmp_path: Path) -> None:
    started = time.monotonic()
    run_state_machine_as_test(
        lambda: RealFleetMachine(module_fleet, tmp_path),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    examples = next(_examples)
    assert examples >= EXAMPLES, f"only {examples} examples ran"
    steps = next(_steps)
    print(f"{examples} examples, {steps} steps in {time.monotonic() - started:.0f}s")
