"""Property tests: any sequence of inits, rotations and clock advances keeps the repository safe.

They drive the real planner and the real on-disk repository (a temp directory), and
check the result with keystone's own loader logic.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from keysyncd.core.policy import Policy, confirm_demotions
from tests.keystone_compat import keystone_rotation_indices, multifernet
from tests.local_harness import LocalHarness

HOUR = 3600


class RotationMachine(RuleBasedStateMachine):
    """A repository under random rotations and clock advances, with tokens issued all along."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="keysyncd-prop-"))
        self.now = 1_700_000_000.0
        self.tokens: list[tuple[bytes, float]] = []  # (token, issued_at)
        self.seen_states: list[frozenset[str]] = []
        self.highest_index = 0
        self.ready = False

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @initialize(
        max_active=st.integers(2, 6),
        expiration=st.integers(1, 4 * HOUR),
        window=st.integers(0, 24 * HOUR),
    )
    def init(self, max_active: int, expiration: int, window: int) -> None:
        self.policy = Policy(max_active, expiration, window)
        self.local = LocalHarness(self.root, self.policy, self.now)
        self.repository = self.local.repository
        self.state = self.local.init()
        self.ready = True
        self.issue_token()

    def issue_token(self) -> None:
        """Encrypt a token with the primary key, as keystone would."""
        keyset = self.repository.load()
        assert keyset.primary is not None
        self.tokens.append((Fernet(keyset.primary.material).encrypt(b"token"), self.now))

    @precondition(lambda self: self.ready)
    @rule(seconds=st.integers(0, 30 * HOUR))
    def advance_clock(self, seconds: int) -> None:
        self.now += seconds
        self.local.now = self.now
        self.issue_token()

    @precondition(lambda self: self.ready)
    @rule()
    def rotate(self) -> None:
        keyset, state, foreign = self.local.prepare()
        assert not foreign, "keysyncd must recognise its own writes"
        before = set(keyset.indices)
        history_before = dict(state.history)
        plan, _, self.state = self.local.rotate()
        after = set(self.repository.load().indices)
        assert after == set(plan.resulting)
        for index in plan.retire:
            confirmed_at = history_before[index].confirmed_at
            assert confirmed_at is not None and confirmed_at + self.policy.retention <= self.now
        if not plan.keep:
            assert after == keystone_rotation_indices(before, self.policy.max_active_keys)
        assert plan.new_primary > self.highest_index, "indices only grow"
        self.highest_index = plan.new_primary
        # a controller without nodes confirms the demotion at once (every node: none)
        self.state = replace(self.state, history=confirm_demotions(self.state.history, self.now))
        self.local.save(self.state)
        self.issue_token()

    @precondition(lambda self: self.ready)
    @rule()
    def retire_what_is_due(self) -> None:
        self.state = self.local.retire_due()

    @invariant()
    def staged_and_primary_present(self) -> None:
        if self.ready:
            keyset = self.repository.load()
            assert keyset.staged is not None and keyset.primary is not None

    @invariant()
    def no_duplicate_key_content(self) -> None:
        if self.ready:
            digests = list(self.repository.load().digests().values())
            assert len(digests) == len(set(digests))

    @invariant()
    def states_never_repeat(self) -> None:
        if self.ready:
            current = frozenset(self.repository.load().digests().values())
            if not self.seen_states or self.seen_states[-1] != current:
                assert current not in self.seen_states, "a repository state came back"
                self.seen_states.append(current)

    @invariant()
    def live_tokens_decrypt(self) -> None:
        """A token may only become undecryptable once it can no longer be valid."""
        if not self.ready:
            return
        fernet = multifernet(str(self.repository.path))
        for token, issued_at in self.tokens:
            if self.now < issued_at + self.policy.retention:
                try:
                    fernet.decrypt(token)
                except InvalidToken:
                    raise AssertionError(f"a token issued at {issued_at} was lost") from None

    @invariant()
    def journal_matches_disk(self) -> None:
        if self.ready:
            assert dict(self.state.digests) == self.repository.load().digests()
            assert self.local.state() == self.state, "what was saved is what is known"


RotationMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRotationProperties = RotationMachine.TestCase
