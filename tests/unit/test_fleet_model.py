"""Stateful model test of the fleet: rotate / sync / stop-node / start-node / advance-clock.

The REAL code runs end to end: ``rotate_repository`` and ``sync_repository`` with the real
planner, the real local repository (a temp directory on disk), the real state journal and the
real ``FleetAction`` two-phase push. Only the wire is replaced:
``keysyncd.io.remote.fanout.connect`` returns a ``MemorySession`` over an in-memory node
(files + modes), and a node that is
"down" refuses the connection with ``NodeError(node, "unreachable", ...)``. Time is the
machine's clock (patched into the action modules), so retirement is decided exactly.

After every step (and after every single file operation on any node, for the rules that must
hold while a push is under way, including for a keystone reader whose listing and reads
straddle that operation), the machine checks SPEC section 2:

- every node always holds a valid repository (staged 0, a primary, only valid keys);
- every node's key set, and the controller's, holds the primary of every other node and of
  the controller (rules 1 and 3). A node that was down while a ``--force`` rotation went
  ahead is legitimately behind: pairs involving it are skipped until it is synced again;
- after every step keystone on the controller and on every node that is not behind (down
  or not: only its sshd is unreachable) issues a token with its primary; each stays
  decryptable with keystone's MultiFernet everywhere (except on nodes behind) while
  ``issued_at + token_expiration + allow_expired_window > now`` (rule 2);
- a node's generation (the controller generation whose digests it holds) never goes back,
  and a node only ever holds a state the controller once had.

``MidPushFailureMachine`` adds a node that dies in the middle of a push (it keeps the old
primary until it is synced). ``FleetMachine`` is the backend-independent machine;
tests/integration/test_fleet_stateful.py runs it against a real OpenSSH fleet.

The machine is in tests/fleet_machine.py, the in-memory fleet and the rule checks in
tests/memory_fleet.py.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

import keysyncd.actions.bootstrap
import keysyncd.actions.distribute
import keysyncd.io.remote.fanout
from keysyncd.actions.context import Run
from keysyncd.config import Config
from keysyncd.core.vocabulary import Trigger
from keysyncd.io.local.state import load_state
from tests.fleet_machine import FleetMachine
from tests.memory_fleet import (
    EPOCH,
    ModelFleet,
    NoCredentials,
    key_files,
    memory_config,
    primaries_problem,
    primary_of,
    repository_problems,
    tokens_problem,
)


class ModelFleetMachine(FleetMachine):
    """FleetMachine over in-memory nodes, with the real planner, repository and FleetAction."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="keysyncd-model-"))
        self.fleet = ModelFleet(self.node_names)
        self.fleet.observer = self.while_pushing
        self.violations: list[str] = []
        # the phase reader: each node's listing when a fleet-wide phase starts
        self.phase_listings: dict[str, set[str]] = {}
        self.phase_primaries: dict[str, bytes | None] = {}
        self.straddled = 0
        self.patches = pytest.MonkeyPatch()
        self.patches.setattr(keysyncd.io.remote.fanout, "connect", self.fleet.connect)
        self.patches.setattr(keysyncd.io.remote.fanout, "Credentials", NoCredentials)

    def teardown(self) -> None:
        self.patches.undo()
        shutil.rmtree(self.root, ignore_errors=True)

    concurrency = 3

    def epoch(self) -> float:
        return EPOCH

    def make_run(self) -> Run:
        """Return a Run whose push phases drive the phase reader (``on_phase``)."""
        return Run(
            self.config, self.repository, Trigger.CLI, clock=self.now, progress=self.on_phase
        )

    def on_phase(self, phase: str, node: str, done: int, total: int) -> None:
        """A keystone reader on every node that lists its directory when a push phase starts
        and reads the listed files when that phase has ended on every node: its listing and
        its reads straddle a whole phase (SPEC safety rule 3). Without the fleet-wide barrier
        between phase 1 and phase 2, a node's phase 2 (``0`` replaced) lands inside the
        window of its phase 1 and the reader loses the key that is primary elsewhere.
        """
        if not self.ready or phase not in ("phase 1", "phase 2"):
            return
        with self.fleet.lock:
            nodes = {name: dict(node.files) for name, node in self.fleet.nodes.items()}
        trusted = {name: files for name, files in nodes.items() if name not in self.behind}
        if done == 0:
            self.phase_listings = {name: set(files) for name, files in nodes.items()}
            self.phase_primaries = {name: primary_of(files) for name, files in trusted.items()}
            return
        if done < total:
            return
        self.straddled += 1
        readers = {
            f"a reader on {name} straddling {phase}": {
                key: content
                for key, content in files.items()
                if key in self.phase_listings.get(name, ())
            }
            for name, files in trusted.items()
        }
        primaries = {*self.phase_primaries.values(), *map(primary_of, trusted.values())}
        for reader, files in readers.items():
            held = set(key_files(files).values())
            if missing := [key for key in primaries if key is not None and key not in held]:
                self.violations.append(
                    f"{reader} lacks {len(missing)} key(s) primary on some node during it"
                )
        if problem := tokens_problem(readers, self.live_tokens(), self.now()):
            self.violations.append(problem)

    def armed_nodes(self) -> set[str]:
        return {
            name
            for name, node in self.fleet.nodes.items()
            if node.up and node.dies_after is not None
        }

    def arm(self, name: str, writes: int) -> None:
        """Make ``name`` go down after ``writes`` more writes (temp, rename, remove, chmod)."""
        self.fleet.nodes[name].dies_after = writes
        self.after_step(f"arm {name} to die after {writes} writes")

    def node_files(self, name: str) -> dict[str, bytes]:
        with self.fleet.lock:
            return dict(self.fleet.nodes[name].files)

    def node_is_up(self, name: str) -> bool:
        return self.fleet.nodes[name].up

    def set_node_up(self, name: str, up: bool) -> None:
        self.fleet.nodes[name].up = up
        self.fleet.nodes[name].dies_after = None

    def make_config(self, repository: dict[str, Any]) -> Config:
        # several nodes at once, as in production: a phase's operations interleave
        return memory_config(self.root, self.node_names, repository, concurrency=self.concurrency)

    def while_pushing(self, changed: str, what: str) -> None:
        """Called after every file operation on a node: rules 1-3 hold between any two of them.

        Besides every node's current files, it checks a keystone reader on the changed node
        whose listing was taken before the operation and whose reads come after it (a reader
        straddling the operation). Nodes that are behind (or may fall behind in this forced
        step) are left out, as after a step; every node must hold a valid repository always.
        """
        if not self.ready:
            return
        what = f"{changed}: {what}"
        # Every state a node may be given is in the journal first: remember its generation.
        state = load_state(self.config.state_dir, self.repository.name)
        known = self.generation_of.setdefault(frozenset(state.digests.items()), state.generation)
        if known != state.generation:
            self.violations.append(
                f"at {what}: one digest set, generations {known}, {state.generation}"
            )
        nodes = {name: dict(node.files) for name, node in self.fleet.nodes.items()}
        for name, files in nodes.items():
            if problems := repository_problems(files, settled=False):
                self.violations.append(f"after {what}: {name} is invalid: {problems}")
        trusted = {n: f for n, f in nodes.items() if n not in self.behind}
        readers = {}
        if changed in trusted:
            listed = self.fleet.nodes[changed].listing
            readers[f"a reader straddling the operation on {changed}"] = {
                name: content for name, content in trusted[changed].items() if name in listed
            }
        if problem := primaries_problem(trusted, readers):
            self.violations.append(f"after {what}: {problem}")
        if problem := tokens_problem({**trusted, **readers}, self.live_tokens(), self.now()):
            self.violations.append(f"after {what}: {problem}")

    @invariant()
    def no_reader_ever_missed_a_key(self) -> None:
        assert not self.violations, (
            f"during a push: {self.violations[0]} ({len(self.violations)} violations); "
            + self.describe()
        )


class MidPushFailureMachine(ModelFleetMachine):
    """ModelFleetMachine plus a node that dies in the middle of a rotation's or a sync's push.

    A node that misses part of a rotation's push keeps the old primary (keystone there goes
    on encrypting with it) until it is synced again, so that key must outlive its use on
    that node by the full retention (SPEC safety rule 2), and stay on every other node.
    """

    @initialize(
        max_active_keys=st.integers(2, 3),
        token_expiration=st.integers(1, 3600),
        allow_expired_window=st.integers(0, 3600),
    )
    def init(self, max_active_keys: int, token_expiration: int, allow_expired_window: int) -> None:
        """Few keys, so that retirement (where a missed promotion hurts) comes early."""
        super().init(max_active_keys, token_expiration, allow_expired_window)

    def _failing(self, pick: int, writes: int, action: Callable[[], None]) -> None:
        """Run ``action`` with one up node set to die after ``writes`` of its writes."""
        if up := self.up_nodes():
            name = up[pick % len(up)]
            self.fleet.nodes[name].dies_after = writes
            self.log.append(f"{name} dies after {writes} writes in:")
        action()
        for node in self.fleet.nodes.values():
            node.dies_after = None  # it survived the action: disarm

    @precondition(lambda self: self.ready and not self.down_nodes())  # else it only defers
    @rule(pick=st.integers(0, 2), writes=st.integers(0, 4))
    def rotate_while_a_node_fails(self, pick: int, writes: int) -> None:
        self._failing(pick, writes, self.rotate)

    @precondition(lambda self: self.ready)
    @rule(pick=st.integers(0, 2), writes=st.integers(0, 4))
    def sync_while_a_node_fails(self, pick: int, writes: int) -> None:
        self._failing(pick, writes, self.sync)


def model_settings(**overrides: Any) -> settings:
    return settings(
        **{
            "max_examples": 40,
            "stateful_step_count": 20,
            "deadline": None,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
            **overrides,
        }
    )


ModelFleetMachine.TestCase.settings = model_settings()


TestFleetModel = ModelFleetMachine.TestCase


MidPushFailureMachine.TestCase.settings = model_settings()


TestFleetModelWithMidPushFailures = MidPushFailureMachine.TestCase


# --- fixed scenarios: the interesting paths always run, and known bugs stay pinned -----------


@contextlib.contextmanager
def machine() -> Iterator[ModelFleetMachine]:
    model = ModelFleetMachine()
    try:
        yield model
    finally:
        model.teardown()


def check(model: FleetMachine) -> None:
    """Run every invariant of ``model`` (as hypothesis does after each step)."""
    for name in dir(type(model)):
        if hasattr(getattr(type(model), name), "hypothesis_stateful_invariant"):
            getattr(model, name)()


def test_a_reader_straddling_a_whole_phase_never_loses_a_primary() -> None:
    """Rotations on three nodes pushed three at a time, with a reader on every node that
    straddles each whole phase (``ModelFleetMachine.on_phase``): none may miss a key."""
    with machine() as model:
        model.init(max_active_keys=3, token_expiration=10, allow_expired_window=0)
        for number in range(6):
            model.rotate()
            check(model)
            model.offset += 5 + number
        assert model.straddled == 2 * 6, "the reader straddled phase 1 and phase 2 of each push"


def test_down_node_defers_then_forced_rotation_leaves_it_behind_until_synced() -> None:
    with machine() as model:
        model.init(max_active_keys=2, token_expiration=60, allow_expired_window=0)
        check(model)
        model.stop_node(0)
        model.rotate()  # deferred
        check(model)
        for _ in range(3):
            model._rotate(force=True)
            check(model)
            model.offset += 61
        assert model.behind == {"node1"}
        model.start_node(0)
        model.sync()
        check(model)
        assert model.behind == set()
        assert model.fleet.operations > 0


def test_kept_key_is_retired_only_once_safe() -> None:
    with machine() as model:
        model.init(max_active_keys=2, token_expiration=100, allow_expired_window=50)
        model.rotate()  # 1 demoted at t+0, kept
        assert set(key_files(model.controller_files())) == {0, 1, 2}
        model.offset += 149
        model.rotate()  # 1 still not safe (149 < 150): kept
        assert 1 in key_files(model.controller_files())
        check(model)
        model.offset += 1
        model.rotate()  # 1 safe at exactly t+150, 2 demoted at t+149 not yet
        assert set(key_files(model.controller_files())) == {0, 2, 3, 4}
        check(model)


# An in-sync node gets no write before the promotion; its first write is the new primary.
MISSES_THE_PROMOTION = 0


def node1_misses_a_rotation(model: ModelFleetMachine) -> None:
    """Rotate at t+0 while node1 dies before it gets the new primary: it keeps key 1."""
    model.init(max_active_keys=2, token_expiration=100, allow_expired_window=0)
    model.arm("node1", MISSES_THE_PROMOTION)
    model.rotate()
    assert model.partial == {"node1"}, model.describe()
    assert sorted(key_files(model.node_files("node1"))) == [0, 1], "node1 kept primary 1"
    assert sorted(key_files(model.controller_files())) == [0, 1, 2]


def test_sync_keeps_the_primary_of_a_node_that_missed_a_rotation() -> None:
    """A sync must not retire a key that an unverified node may still use as its primary.

    node1 missed the rotation at t+0 (its push failed), so keystone on node1 still encrypts
    with key 1. Rotations defer while node1 is unverified; a sync at t+100 (retention 100)
    must not retire key 1 either, or every token node1 issues fails on the other nodes.
    (Found by MidPushFailureMachine when sync started retiring due keys.)
    """
    with machine() as model:
        node1_misses_a_rotation(model)
        model.offset += 100
        model.after_step("advance 100s")
        model.sync()
        assert 1 in key_files(model.controller_files()), (
            "SPEC safety rule 2 broken: sync_repository retired key 1 while node1, unreachable "
            "since it missed the rotation at t+0, still uses key 1 as its primary; every "
            "token node1 issues now fails on the controller and the other nodes. A key may "
            "only be retired once every node was verified past it (keysyncd.core.policy)"
        )
        check(model)


def test_retirement_waits_for_the_last_node_to_stop_using_a_key() -> None:
    """A key's retention runs from when the LAST node stopped using it as primary.

    node1 missed the rotation at t+0 and went on encrypting with key 1 until it was synced
    at t+100 (its token from t+60 is valid until t+160). The rotation at t+100 syncs node1
    first; it must not then retire key 1 in the same run on the strength of the controller's
    demotion at t+0. (Found by MidPushFailureMachine.)
    """
    with machine() as model:
        node1_misses_a_rotation(model)
        model.offset += 60
        model.after_step("advance 60s")
        model.start_node(0)
        model.offset += 40
        model.after_step("advance 40s")
        check(model)
        model.rotate()
        assert 1 in key_files(model.controller_files()), (
            "SPEC safety rule 2 broken: the rotation at t+100 retired key 1, demoted at t+0 "
            "when the controller promoted key 2, although node1 missed that promotion and "
            "used key 1 as its primary until this very run synced it (its token from t+60 is "
            "valid until t+160). Retention must run from when the last node stopped using it"
        )
        check(model)


def test_retention_runs_from_confirmation_not_from_demotion() -> None:
    """Key 1 was demoted at t+0 but node1 (which missed that rotation) used it as its primary
    until it was synced at t+100, which is when every node was confirmed past the demotion.
    With retention 100 it must survive every action before t+200 (in particular the first one
    after t+100, where a clock started at the demotion would retire it) and go at t+200.
    """
    with machine() as model:
        node1_misses_a_rotation(model)
        model.offset += 60
        model.after_step("advance 60s")  # node1 issues a token with key 1 at t+60
        model.start_node(0)
        model.offset += 40
        model.rotate()  # t+100: node1 synced and confirmed; key 1 kept (its token lives)
        check(model)
        for moment in (101, 160, 199):
            model.offset = moment
            model.rotate()
            assert 1 in key_files(model.controller_files()), (
                f"SPEC safety rule 2 broken: key 1 retired at t+{moment}, before t+200: its "
                "retention must run from t+100, when every node was verified past its "
                "demotion (node1 used it as its primary until then), not from the demotion "
                "at t+0"
            )
            check(model)
        model.offset = 200
        model.rotate()
        assert 1 not in key_files(model.controller_files()), (
            "key 1 is safe to retire at t+200 (confirmed at t+100, retention 100) and every "
            "node is up: the rotation at t+200 must retire it"
        )
        check(model)
