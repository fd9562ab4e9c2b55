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
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import keysyncd.actions.bootstrap
import keysyncd.actions.distribute
import keysyncd.actions.rotate
import keysyncd.io.remote.fanout
from keysyncd.actions.bootstrap import init_repository
from keysyncd.actions.context import Run
from keysyncd.actions.distribute import sync_repository
from keysyncd.actions.rotate import rotate_repository
from keysyncd.config import Config, NodeConfig, parse_config
from keysyncd.core.keyring import digest_of
from keysyncd.core.view import MAX_KEY_FILE, TEMP_PREFIX, Entry, EntryType, key_index
from keysyncd.core.vocabulary import GOOD, Trigger
from keysyncd.errors import NodeError
from keysyncd.io.local.fsutil import temp_name
from keysyncd.io.local.state import load_state
from keysyncd.io.remote.sftp import Listing

EPOCH = 1_700_000_000.0
CONTROLLER = "controller"
NODE_NAMES = ("node1", "node2", "node3")

Files = Mapping[str, bytes]
DigestState = frozenset[tuple[int, str]]


@dataclass(frozen=True)
class Token:
    """A token keystone on ``source`` encrypted with its primary key at ``issued_at``."""

    token: bytes
    issued_at: float
    source: str
    what: str


# --- what keystone sees in a directory -------------------------------------------------------


def key_files(files: Files) -> dict[int, bytes]:
    """Return index -> content of the files keystone would load (integer names, not empty)."""
    keys = {}
    for name, content in files.items():
        try:
            index = int(name)
        except ValueError:
            continue
        if content:
            keys[index] = content
    return keys


def keystone_multifernet(files: Files) -> MultiFernet:
    """Return the MultiFernet keystone builds from ``files``: primary first, then descending."""
    keys = key_files(files)
    return MultiFernet([Fernet(keys[index]) for index in sorted(keys, reverse=True)])


def primary_of(files: Files) -> bytes | None:
    """Return the content of the primary key (highest index above 0), or None."""
    above = [index for index in key_files(files) if index > 0]
    return key_files(files)[max(above)] if above else None


def digest_state(files: Files) -> DigestState:
    """Return the repository state of ``files`` as (index, sha256) pairs."""
    return frozenset((index, digest_of(content)) for index, content in key_files(files).items())


def repository_problems(files: Files, settled: bool) -> list[str]:
    """Return why ``files`` is not a valid keystone repository (empty when it is).

    ``settled``: no push is under way, so no temp file may be left behind either.
    """
    problems = []
    keys = key_files(files)
    for name, content in files.items():
        if name.startswith(TEMP_PREFIX):
            if settled:
                problems.append(f"temp file {name} left behind")
            continue
        if name not in {str(index) for index in keys}:
            problems.append(f"unexpected file {name!r}")
            continue
        try:
            Fernet(content)
        except (ValueError, TypeError):
            problems.append(f"key {name} is not a valid Fernet key")
    if 0 not in keys:
        problems.append("no staged key 0")
    if primary_of(files) is None:
        problems.append("no primary key")
    return problems


# --- the in-memory fleet ---------------------------------------------------------------------


class ModelNode:
    """One node's repository directory in memory: files, their modes, the directory mode."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, int] = {}
        self.directory_mode = 0o700
        self.listing: set[str] = set()  # the names before the last operation
        self.dies_after: int | None = None  # writes it completes before it goes down, if armed


class ModelFleet:
    """The in-memory nodes, one lock for every file operation, and an observer.

    ``observer`` is called (under the lock) after every change on any node, so the machine
    can check the rules that must hold while a push is under way, between any two operations.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.nodes = {name: ModelNode(name) for name in names}
        self.lock = threading.RLock()
        self.observer: Callable[[str, str], None] | None = None
        self.operations = 0

    def changed(self, node: ModelNode, what: str) -> None:
        self.operations += 1
        if self.observer is not None:
            self.observer(node.name, what)
        node.listing = set(node.files)

    def connect(self, node: NodeConfig, directory: Path, credentials: object) -> MemorySession:
        """Stand-in for keysyncd.io.remote.ssh.connect: a session, or NodeError if it is down."""
        model = self.nodes[node.name]
        if not model.up:
            raise NodeError(node.name, "unreachable", "connection refused (model node is down)")
        return MemorySession(self, model)


class MemorySession:
    """The NodeSession methods FleetAction calls, over a ModelNode (same errors, same rules)."""

    def __init__(self, fleet: ModelFleet, node: ModelNode) -> None:
        self.fleet = fleet
        self.node = node
        self.closed = False

    def _check(self, doing: str, writes: bool = True) -> None:
        node = self.node
        if writes and node.dies_after is not None:  # armed: the node dies before this write
            if node.dies_after == 0:
                node.up, node.dies_after = False, None
            else:
                node.dies_after -= 1
        if self.closed or not node.up:
            raise NodeError(self.node.name, "unreachable", f"connection lost while {doing}")

    def _missing(self, name: str, doing: str) -> NodeError:
        return NodeError(self.node.name, "error", f"no such file {name} while {doing}")

    def list_directory(self, above: bool = False) -> Listing:  # no directory above is modelled
        with self.fleet.lock:
            self._check("listing", writes=False)
            files = sorted(self.node.files.items())
            entries = tuple(
                Entry(name, EntryType.FILE, self.node.modes[name], len(content), 0, 0)
                for name, content in files
                if key_index(name) is not None
            )
            temps = tuple(name for name, _ in files if name.startswith(TEMP_PREFIX))
            return Listing(self.node.directory_mode, entries, temps)  # S_IMODE, as the real one

    def directory_mode(self) -> int:
        with self.fleet.lock:
            self._check("looking at the directory", writes=False)
            return self.node.directory_mode

    def list_every_entry(self) -> tuple[int, tuple[Entry, ...], tuple[str, ...]]:
        """Every name, as init's check for a directory holding other files reads it."""
        with self.fleet.lock:
            self._check("listing", writes=False)
            files = sorted(self.node.files.items())
            entries = tuple(
                Entry(name, EntryType.FILE, self.node.modes[name], len(content), 0, 0)
                for name, content in files
            )
            temps = tuple(name for name, _ in files if name.startswith(TEMP_PREFIX))
            return self.node.directory_mode, entries, temps

    def read(self, entry: Entry) -> bytes:
        name = entry.name
        with self.fleet.lock:
            self._check(f"reading {name}", writes=False)
            if name not in self.node.files:
                raise self._missing(name, "reading")
            return self.node.files[name][: MAX_KEY_FILE + 1]

    def read_many(self, entries: Sequence[Entry]) -> list[bytes | None]:
        # One file after another, each under the lock: a writer may come between any two,
        # which allows every interleaving the real two-batch read allows, and more.
        return [self.read(entry) for entry in entries]

    def clock_skew(self, clock: Callable[[], float]) -> float | None:
        """The model's nodes keep the controller's time (the machine's clock is theirs)."""
        with self.fleet.lock:
            self._check("reading the clock", writes=False)
            return 0.0

    def write_temp(self, content: bytes, uid: int | None, gid: int | None) -> str:
        with self.fleet.lock:
            self._check("writing a temp file")
            name = temp_name()
            assert name not in self.node.files, "temp names must be exclusive"
            self.node.files[name] = bytes(content)
            self.node.modes[name] = 0o600
            self.fleet.changed(self.node, f"write {name}")
            return name

    def rename(self, source: str, target: str) -> None:
        with self.fleet.lock:
            self._check(f"renaming into {target}")
            if source not in self.node.files:
                raise self._missing(source, f"renaming into {target}")
            self.node.files[target] = self.node.files.pop(source)
            self.node.modes[target] = self.node.modes.pop(source)
            self.fleet.changed(self.node, f"rename {source} -> {target}")

    def remove(self, name: str) -> None:
        with self.fleet.lock:
            self._check(f"removing {name}")
            if name not in self.node.files:
                raise self._missing(name, "removing")
            del self.node.files[name]
            del self.node.modes[name]
            self.fleet.changed(self.node, f"remove {name}")

    def remove_quietly(self, name: str) -> None:
        with contextlib.suppress(NodeError):
            self.remove(name)

    def chmod_directory(self, mode: int, uid: int | None = None, gid: int | None = None) -> None:
        with self.fleet.lock:
            self._check("changing the mode of the directory")
            self.node.directory_mode = mode & 0o7777
            self.fleet.changed(self.node, f"chmod directory {mode:o}")

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class NoCredentials:
    """Stand-in for keysyncd.io.remote.ssh.Credentials: no known_hosts or key files are read."""

    def __init__(self, ssh: object, deadlines: object = None) -> None:
        self.ssh = ssh


# --- the machine -----------------------------------------------------------------------------


class FleetMachine(RuleBasedStateMachine):
    """Rotate / sync / stop / start / advance the clock; check SPEC section 2 after each step.

    Subclasses provide the nodes: ``node_files``, ``node_is_up``, ``set_node_up``,
    ``make_config`` and ``epoch`` (the clock is ``epoch() + offset``).
    """

    node_names: tuple[str, ...] = NODE_NAMES

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0
        self.ready = False
        self.behind: set[str] = set()  # nodes left behind by a --force rotation while down
        # Nodes that died in the middle of a push: they hold a state between two generations,
        # but still every primary and every live token's key (they are not behind).
        self.partial: set[str] = set()
        self.victims: set[str] = set()  # nodes armed to die during the current step
        self.generation_of: dict[DigestState, int] = {}
        self.node_generation: dict[str, int] = {}
        self.controller_generation = 0
        self.tokens: list[Token] = []
        self.log: list[str] = []

    # backend hooks

    def epoch(self) -> float:
        raise NotImplementedError

    def node_files(self, name: str) -> dict[str, bytes]:
        raise NotImplementedError

    def node_is_up(self, name: str) -> bool:
        raise NotImplementedError

    def set_node_up(self, name: str, up: bool) -> None:
        raise NotImplementedError

    def make_config(self, repository: dict[str, Any]) -> Config:
        raise NotImplementedError

    def armed_nodes(self) -> set[str]:
        """Return the nodes set to die in the middle of the next action (none by default)."""
        return set()

    # helpers

    def make_run(self) -> Run:
        """Return a Run of the one repository on this machine's clock."""
        return Run(self.config, self.repository, Trigger.CLI, clock=self.now)

    def now(self) -> float:
        return self.epoch() + self.offset

    def controller_files(self) -> dict[str, bytes]:
        path = self.repository.path
        return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}

    def up_nodes(self) -> list[str]:
        return [name for name in self.node_names if self.node_is_up(name)]

    def down_nodes(self) -> list[str]:
        return [name for name in self.node_names if not self.node_is_up(name)]

    def holders(self) -> dict[str, dict[str, bytes]]:
        """Return the controller and every node not left behind by a forced rotation."""
        found = {CONTROLLER: self.controller_files()}
        for name in self.node_names:
            if name not in self.behind:
                found[name] = self.node_files(name)
        return found

    def retention(self) -> int:
        return self.repository.token_expiration + self.repository.allow_expired_window

    def live_tokens(self) -> list[Token]:
        """Return the tokens that may still be valid."""
        now = self.now()
        return [token for token in self.tokens if token.issued_at + self.retention() > now]

    def fall_behind(self, names: set[str]) -> None:
        """Mark ``names`` as (possibly) left behind by --force; forget the tokens they issued,
        whose loss is what --force accepts.
        """
        self.behind |= names
        self.tokens = [token for token in self.tokens if token.source not in names]

    def issue_tokens(self, what: str) -> None:
        """Encrypt a token with the primary key of the controller and of every node, as keystone
        does on each node (a node whose sshd is unreachable may still serve keystone).

        Nodes left behind by --force are skipped: losing their tokens is what --force accepts.
        """
        now = self.now()
        self.tokens = self.live_tokens()
        issued: set[bytes] = set()
        for source, files in self.holders().items():
            primary = primary_of(files)
            assert primary is not None, f"{source} has no primary"
            if primary not in issued:
                issued.add(primary)
                token = Fernet(primary).encrypt(b"token")
                self.tokens.append(Token(token, now, source, what))

    def after_step(self, what: str) -> None:
        """Bookkeeping after a step: who died mid-push, who caught up; then a new token."""
        self.log.append(f"t+{self.offset:g}: {what}")
        controller = digest_state(self.controller_files())
        for name in self.victims - self.behind:
            if not self.node_is_up(name) and digest_state(self.node_files(name)) != controller:
                self.partial.add(name)
        self.victims = set()
        for name in sorted(self.behind | self.partial):
            if digest_state(self.node_files(name)) == controller:
                self.behind.discard(name)
                self.partial.discard(name)
        self.issue_tokens(what)

    def died(self) -> list[str]:
        """Return the nodes armed at the start of this step that have gone down since."""
        return sorted(name for name in self.victims if not self.node_is_up(name))

    def describe(self) -> str:
        return (
            f"policy max_active_keys={self.repository.max_active_keys} "
            f"token_expiration={self.repository.token_expiration} "
            f"allow_expired_window={self.repository.allow_expired_window}; "
            f"down={self.down_nodes()} behind={sorted(self.behind)} "
            f"partial={sorted(self.partial)}; steps: " + " | ".join(self.log[-12:])
        )

    # rules

    @initialize(
        max_active_keys=st.integers(2, 5),
        token_expiration=st.integers(1, 3600),
        allow_expired_window=st.integers(0, 3600),
    )
    def init(self, max_active_keys: int, token_expiration: int, allow_expired_window: int) -> None:
        self.config = self.make_config(
            {
                "max_active_keys": max_active_keys,
                "token_expiration": token_expiration,
                "allow_expired_window": allow_expired_window,
            }
        )
        (self.repository,) = self.config.repositories
        result = init_repository(self.make_run())
        assert result.outcome == "ok", result
        self.ready = True
        self.after_step("init")

    def _rotate(self, force: bool) -> None:
        down = self.down_nodes()
        self.victims = self.armed_nodes()
        before = load_state(self.config.state_dir, self.repository.name).generation
        if force:
            # Until the step is over, a node that is down (or may die) may end up behind.
            self.fall_behind(set(down) | self.victims)
        result = rotate_repository(self.make_run(), dry_run=False, force=force)
        after = load_state(self.config.state_dir, self.repository.name).generation
        died = self.died()
        label = (
            f"rotate{' --force' if force else ''} (down {down}, died {died}) -> {result.outcome}"
        )
        if result.outcome == "deferred":
            assert after == before, f"{label}: a deferred rotation changed the repository"
        # --force overrides a node down, never the clock: a majority of the nodes must vouch
        # for it (SPEC rule 10)
        vouched = len(self.node_names) - len(down) >= len(self.node_names) // 2 + 1
        if down and (not force or not vouched):
            assert result.outcome == "deferred", f"{label}: must defer with nodes down"
        elif not died:
            assert after == before + 1, f"{label}: generation {before} -> {after}"
            expected = outcome_with(down, self.node_names)
            assert result.outcome == expected, f"{label}: {result.messages}"
        self.after_step(label)

    @precondition(lambda self: self.ready)
    @rule()
    def rotate(self) -> None:
        self._rotate(force=False)

    @precondition(lambda self: self.ready)
    @rule(draw=st.integers(0, 2))
    def rotate_forced(self, draw: int) -> None:
        """Force one draw in three (the other two rotate normally): --force is the exception."""
        self._rotate(force=draw == 0)

    @precondition(lambda self: self.ready)
    @rule()
    def sync(self) -> None:
        down = self.down_nodes()
        self.victims = self.armed_nodes()
        result = sync_repository(self.make_run())
        died = self.died()
        label = f"sync (down {down}, died {died}) -> {result.outcome}"
        expected = outcome_with(sorted({*down, *died}), self.node_names)
        assert result.outcome == expected, label
        for name in self.up_nodes():
            node = result.nodes[name]
            assert node.status in GOOD, f"{label}: {name} {node.reason}: {node.error}"
        self.after_step(label)

    @precondition(lambda self: self.ready)
    @rule(pick=st.integers(0, 2))
    def stop_node(self, pick: int) -> None:
        if up := self.up_nodes():
            name = up[pick % len(up)]
            self.set_node_up(name, False)
            self.after_step(f"stop {name}")

    @precondition(lambda self: self.ready)
    @rule(pick=st.integers(0, 2))
    def start_node(self, pick: int) -> None:
        if down := self.down_nodes():
            name = down[pick % len(down)]
            self.set_node_up(name, True)
            self.after_step(f"start {name}")

    @precondition(lambda self: self.ready)
    @rule(data=st.data())
    def advance_clock(self, data: st.DataObject) -> None:
        retention = self.retention()
        seconds = data.draw(
            st.one_of(
                st.sampled_from([0, 1, retention - 1, retention, retention + 1]),
                st.integers(0, 2 * retention),
            ),
            label="seconds",
        )
        self.offset += seconds
        self.after_step(f"advance {seconds}s")

    # invariants

    @invariant()
    def every_repository_is_valid(self) -> None:
        if not self.ready:
            return
        for name in (CONTROLLER, *self.node_names):
            files = self.controller_files() if name == CONTROLLER else self.node_files(name)
            # A node that died mid-push may keep a temp file until its next push cleans it.
            settled = name not in self.behind | self.partial
            problems = repository_problems(files, settled=settled)
            assert not problems, f"{name} holds an invalid repository: {problems}; " + (
                self.describe()
            )

    @invariant()
    def everyone_holds_everyones_primary(self) -> None:
        if self.ready:
            problem = primaries_problem(self.holders())
            assert problem is None, f"{problem}; {self.describe()}"

    @invariant()
    def live_tokens_decrypt_everywhere(self) -> None:
        if self.ready:
            problem = tokens_problem(self.holders(), self.live_tokens(), self.now())
            assert problem is None, f"{problem}; {self.describe()}"

    @invariant()
    def nodes_in_step_hold_the_controller_keys(self) -> None:
        """A node that is neither behind nor partial holds the controller's keys, same staged
        key and primary; a node that was down when a sync retired keys may still hold those.
        """
        if not self.ready:
            return
        controller = key_files(self.controller_files())
        for name in self.node_names:
            if name in self.behind | self.partial:
                continue
            node = key_files(self.node_files(name))
            assert node.items() >= controller.items() and max(node) == max(controller), (
                f"{name} is not behind but does not hold the controller's keys; {self.describe()}"
            )

    @invariant()
    def generations_never_go_backwards(self) -> None:
        if not self.ready:
            return
        state = load_state(self.config.state_dir, self.repository.name)
        controller = digest_state(self.controller_files())
        assert state.digests == dict(controller), "the state journal differs from the disk"
        assert state.generation >= self.controller_generation, (
            f"controller generation went back: {self.controller_generation} -> {state.generation}"
        )
        self.controller_generation = state.generation
        known = self.generation_of.setdefault(controller, state.generation)
        assert known == state.generation, "one digest set, two generations"
        for name in self.node_names:
            held = digest_state(self.node_files(name))
            generation = self.generation_of.get(held)
            if generation is None and name in self.behind | self.partial:
                continue  # between two generations: it died in the middle of a push
            assert generation is not None, (
                f"{name} holds a key set the controller never had; {self.describe()}"
            )
            last = self.node_generation.get(name, 0)
            assert generation >= last, (
                f"{name} went back from generation {last} to {generation}; {self.describe()}"
            )
            self.node_generation[name] = generation


def outcome_with(down: list[str], nodes: tuple[str, ...]) -> str:
    """Return the report outcome of a push with ``down`` nodes unreachable."""
    if not down:
        return "ok"
    return "failed" if len(down) == len(nodes) else "partial"


def primaries_problem(
    holders: Mapping[str, Files], readers: Mapping[str, Files] | None = None
) -> str | None:
    """Return which holder (or reader) lacks which holder's primary key (by content), or None."""
    everyone = {**holders, **(readers or {})}
    contents = {name: set(key_files(files).values()) for name, files in everyone.items()}
    for source, files in holders.items():
        primary = primary_of(files)
        for holder, held in contents.items():
            if holder != source and primary not in held:
                return f"{holder} lacks the primary key of {source}"
    return None


def tokens_problem(holders: Mapping[str, Files], tokens: list[Token], now: float) -> str | None:
    """Return which holder cannot decrypt which still-valid token, or None."""
    for name, files in holders.items():
        fernet = keystone_multifernet(files)
        for token in tokens:
            try:
                fernet.decrypt(token.token)
            except InvalidToken:
                return (
                    f"{name} cannot decrypt a token issued by {token.source} at "
                    f"{token.issued_at:.3f} (after {token.what}) "
                    f"that may still be valid at {now:.3f}: a key it needs was retired too "
                    "early (SPEC safety rule 2)"
                )
    return None


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
        document = {
            "state_dir": str(self.root / "state"),
            "report_dir": str(self.root / "reports"),
            "repositories": [
                {
                    "name": "fernet-tokens",
                    "kind": "fernet",
                    "path": str(self.root / "keys"),
                    **repository,
                }
            ],
            # Credentials are patched out: these files are never read.
            "ssh": {
                "user": "keystone",
                "known_hosts": "/nonexistent/known_hosts",
                "identity_file": "/nonexistent/id_ed25519",
                # several nodes at once, as in production: a phase's operations interleave
                "concurrency": self.concurrency,
            },
            "nodes": [{"name": name, "host": "127.0.0.1", "port": 22} for name in self.node_names],
        }
        return parse_config(document, self.root / "config.yaml")

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
