"""The fleet state machine, whatever the backend: rotate, sync, stop, start, advance the clock.

After every step it checks SPEC section 2 (see tests/unit/test_fleet_model.py for the rules
and the in-memory fleet it runs on); tests/integration/test_fleet_stateful.py runs it against
a real OpenSSH fleet.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from keysyncd.actions.bootstrap import init_repository
from keysyncd.actions.context import Run
from keysyncd.actions.distribute import rotate_repository, sync_repository
from keysyncd.config import Config
from keysyncd.core.vocabulary import GOOD, Trigger
from keysyncd.io.local.state import load_state
from tests.memory_fleet import (
    CONTROLLER,
    NODE_NAMES,
    DigestState,
    Token,
    digest_state,
    key_files,
    outcome_with,
    primaries_problem,
    primary_of,
    repository_problems,
    tokens_problem,
)

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
