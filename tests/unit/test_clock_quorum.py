"""The clock guard (issue 18 item 5, SPEC rule 10) never retires or rotates on a clock that a
majority of the nodes did not vouch for in the same action: not with one node that shares a
wrong clock (sync --node), not with every node down (sync, rotate --force), and a clock jump
no node saw neither locks keysyncd out afterwards nor prunes the report history.

The real actions run (sync_repository, rotate_repository, the real repository on disk, the
real journal and FleetAction); only the wire is the in-memory fleet of tests/memory_fleet.py, with
each node's clock settable (a node's skew is the controller's clock minus its own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import keysyncd.io.remote.fanout
from keysyncd.actions.bootstrap import init_repository
from keysyncd.actions.context import Run
from keysyncd.actions.distribute import rotate_repository, sync_repository
from keysyncd.config import Config, NodeConfig
from keysyncd.core import clock
from keysyncd.core.vocabulary import Trigger
from keysyncd.io.local.state import load_state
from tests.memory_fleet import MemorySession, ModelFleet, NoCredentials, memory_config

T0 = 1_800_000_000.0
DAY = 86400.0
NODES = ("n1", "n2", "n3")


class ClockedSession(MemorySession):
    """A MemorySession whose node clock is ``node_time()`` (None: the probe tells nothing)."""

    node_time: Callable[[], float | None] = staticmethod(lambda: None)

    def clock_skew(self, clock: Callable[[], float]) -> float | None:
        super().clock_skew(clock)  # raises if the node is down
        when = self.node_time()
        return None if when is None else clock() - when


class World:
    """Three in-memory nodes, a controller clock and per-node clocks (true time + offset)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.true_time = T0
        self.controller_offset = 0.0
        self.node_offsets = dict.fromkeys(NODES, 0.0)
        self.fleet = ModelFleet(NODES)
        self.config = self._config()
        (self.repository,) = self.config.repositories

    def _config(self) -> Config:
        repository = {"max_active_keys": 2, "token_expiration": 3600, "allow_expired_window": 0}
        return memory_config(self.root, NODES, repository)

    def controller(self) -> float:
        return self.true_time + self.controller_offset

    def connect(self, node: NodeConfig, directory: Path, credentials: object) -> MemorySession:
        model = self.fleet.nodes[node.name]
        plain = self.fleet.connect(node, directory, credentials)  # raises if down
        session = ClockedSession(self.fleet, model)
        offset = self.node_offsets[node.name]
        session.node_time = lambda: self.true_time + offset
        plain.close()
        return session

    def run(self) -> Run:
        return Run(self.config, self.repository, Trigger.CLI, clock=self.controller)

    def key_names(self) -> set[str]:
        return {p.name for p in self.repository.path.iterdir() if p.name.isdigit()}

    def down(self, *names: str) -> None:
        for name in names:
            self.fleet.nodes[name].up = False


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    patches = pytest.MonkeyPatch()
    patches.setattr(keysyncd.io.remote.fanout, "connect", w.connect)
    patches.setattr(keysyncd.io.remote.fanout, "Credentials", NoCredentials)
    try:
        yield w
    finally:
        patches.undo()


def _rotated_with_key_kept(world: World) -> None:
    """init at T0, rotate at T0+10: key 1 is demoted, confirmed at T0+10 and kept until
    T0+10+3600 (tokens it encrypted live that long). Every clock right."""
    assert init_repository(world.run()).outcome == "ok"
    world.true_time = T0 + 10
    result = rotate_repository(world.run())
    assert result.outcome == "ok", result.messages
    assert world.key_names() == {"0", "1", "2"}, "key 1 is kept: it protects live tokens"


def _day_ahead_found_by_the_fleet(world: World) -> None:
    """The controller's clock jumps a day ahead; a full sync reads every node and finds it
    (the baseline: the guard works when the whole fleet answers)."""
    world.true_time = T0 + 20
    world.controller_offset = DAY
    world.node_offsets = dict.fromkeys(NODES, 0.0)
    result = sync_repository(world.run())
    assert not result.clock_trusted
    assert world.key_names() == {"0", "1", "2"}
    recorded = load_state(world.config.state_dir, world.repository.name).clock
    assert recorded is not None and recorded.skew is not None and recorded.skew > DAY - 60


def test_sync_node_does_not_let_one_node_sharing_the_wrong_clock_excuse_it(world: World) -> None:
    """`sync --node n3` reads only n3's clock. n3 is a day ahead like the controller (same bad
    NTP source, or a hostile node reporting the mtime it likes): its lone skew 0 must not make
    the clock trusted, or retire_due would delete key 1 while tokens it encrypted live."""
    _rotated_with_key_kept(world)
    _day_ahead_found_by_the_fleet(world)
    world.true_time = T0 + 30
    world.node_offsets["n3"] = DAY  # n3 agrees with the controller's wrong clock
    result = sync_repository(world.run(), node="n3")
    assert "1" in world.key_names(), (
        f"key 1 retired on one node's word with a clock a day ahead (trusted="
        f"{result.clock_trusted}, messages={result.messages})"
    )


def test_sync_with_every_node_unreachable_keeps_keys_and_the_suspicion(
    world: World,
) -> None:
    """The last action found the controller a day ahead (recorded skew +86400). With every
    node then unreachable, `sync` retires nothing, and the recorded skew stays (status and the
    metric keep saying so)."""
    _rotated_with_key_kept(world)
    _day_ahead_found_by_the_fleet(world)
    world.true_time = T0 + 30
    world.down(*NODES)
    result = sync_repository(world.run())
    recorded = load_state(world.config.state_dir, world.repository.name).clock
    assert "1" in world.key_names(), f"key 1 retired with an untrusted clock: {result.messages}"
    assert recorded is not None and recorded.skew is not None, "the suspicion was erased"


def test_rotate_force_with_every_node_down_does_not_retire_on_a_wrong_clock(
    world: World,
) -> None:
    """--force overrides unverified nodes, never the clock: with every node down nothing
    vouches for a clock already found a day ahead, so `rotate --force` retires nothing."""
    _rotated_with_key_kept(world)
    _day_ahead_found_by_the_fleet(world)
    world.true_time = T0 + 30
    world.down(*NODES)
    result = rotate_repository(world.run(), force=True)
    assert "1" in world.key_names(), (
        f"rotate --force retired key 1 with an untrusted clock: {result.outcome} {result.messages}"
    )


def test_a_jump_seen_by_no_node_does_not_lock_keysyncd_out_once_fixed(
    world: World,
) -> None:
    """With no node answering, a clock a week ahead is not trusted and does not move
    latest_time; once the clock is fixed and every node agrees, keysyncd resumes by itself
    (no week of 'stepped back')."""
    _rotated_with_key_kept(world)
    world.true_time = T0 + 20
    world.controller_offset = 7 * DAY
    world.down(*NODES)
    sync_repository(world.run())
    for name in NODES:
        world.fleet.nodes[name].up = True
    world.controller_offset = 0.0
    world.true_time = T0 + 40
    result = sync_repository(world.run())
    state = load_state(world.config.state_dir, world.repository.name)
    check = clock.current(state, world.controller(), world.config.clock.max_skew)
    assert result.clock_trusted, (
        f"every clock agrees, still blocked: {check.reason} (latest_time "
        f"{state.latest_time} is {(state.latest_time or 0) - world.controller():.0f}s ahead)"
    )


def test_sync_with_every_node_unreachable_keeps_the_report_history_over_a_clock_jump(
    world: World,
) -> None:
    """A clock a year ahead with the fleet unreachable ages no report out (all are within
    keep_days of the true time): only a clock the nodes vouched for times retention."""
    _rotated_with_key_kept(world)
    for step in range(20):
        world.true_time = T0 + 100 + step
        sync_repository(world.run())
    before = len(list(world.config.report_dir.glob("2*.json")))
    world.controller_offset = 365 * DAY
    world.down(*NODES)
    with contextlib.suppress(Exception):
        sync_repository(world.run())
    after = len(list(world.config.report_dir.glob("2*.json")))
    assert after >= before, f"{before} reports before the jump, {after} after"
