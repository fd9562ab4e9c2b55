"""The pure clock judgement (keysyncd.core.clock): only a fresh judgement (a majority of the
nodes read in this action) moves the journal's latest time or replaces the recorded skew."""

from __future__ import annotations

from keysyncd.core import clock
from keysyncd.core.journal import ClockRecord, RepositoryState

T = 1_800_000_000.0
WEEK = 7 * 86400.0
MAX_SKEW = 300.0


def test_a_commit_without_node_reads_never_advances_latest_time() -> None:
    """Commits that read no node (the local watch's drift report, 'replaced', an invalid
    repository, adopt) judge with clock.current, on the last skew however old: a clock that
    jumped a week ahead must not move latest_time a week ahead there, or once the clock is
    fixed (every node agreeing) everything would be blocked as 'stepped back' for a week."""
    state = RepositoryState(
        name="r", latest_time=T, clock=ClockRecord(checked_at=T, skew=0.5, observed=3)
    )
    jumped = clock.current(state, T + WEEK, MAX_SKEW)
    after = clock.recorded(state, jumped)
    fixed = clock.judge(T + 60, clock.latest_recorded(after), [0.1, 0.2, 0.3], MAX_SKEW, 2)
    assert fixed.trusted, f"clocks agree, still blocked: {fixed.reason}"


def test_a_judgement_with_no_node_observed_keeps_the_recorded_suspicion() -> None:
    """The previous action found the controller a day ahead (recorded skew 86400). An action
    whose nodes all fail to answer (or a daemon check whose due nodes all back off) learns
    nothing: it is not trusted, and the recorded suspicion stays (status, the metric and the
    alert keep saying so) instead of being overwritten with 'no skew'."""
    state = RepositoryState(
        name="r", latest_time=T, clock=ClockRecord(checked_at=T, skew=86400.0, observed=3)
    )
    nobody = clock.judge(T + 86400 + 60, clock.latest_recorded(state), [], MAX_SKEW, 2)
    assert not nobody.trusted and not nobody.fresh, "no node answered: nothing vouches"
    after = clock.recorded(state, nobody)
    assert not clock.current(after, T + 86400 + 61, MAX_SKEW).trusted
