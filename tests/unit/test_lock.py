"""The lock serialises every mutating action (SPEC safety rule 7): one holder at a time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keysyncd.errors import LockError
from keysyncd.io.local.lock import exclusive


def test_a_second_holder_is_refused_while_the_first_holds_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with (
        exclusive(state, "rotate", clock=lambda: 1_700_000_000.0),
        pytest.raises(LockError, match=rf"PID {os.getpid()} \(rotate\)"),
        exclusive(state, "sync", wait=0),
    ):
        pytest.fail("two holders of the lock at once")
    with exclusive(state, "sync", wait=0):  # free again once the first let go
        pass
