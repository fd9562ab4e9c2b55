"""Hooks end when they should (SPEC rule 9): real processes, real signals, no fleet.

Each hook runs in a process group of its own; its exit status decides, not the end of its
output; a timeout or a stop ends the whole group (SIGTERM, then SIGKILL); output kept in
memory is bounded. Every process a test's hook starts is ended by PID at teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keysyncd.core.journal import HookBlock
from keysyncd.io.runtime.hooks import GROUP_GRACE, HEAD_TAIL, HookRun, run_hooks
from keysyncd.testing.processes import alive


@pytest.fixture
def pids(tmp_path: Path) -> Iterator[Path]:
    """Return a file a hook appends PIDs to; each of them is SIGKILLed at teardown."""
    path = tmp_path / "pids"
    path.touch()
    yield path
    for line in path.read_text().split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(line), signal.SIGKILL)


def recorded(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def sh(script: str) -> tuple[tuple[str, ...], ...]:
    return (("sh", "-c", script),)


def test_a_hook_is_done_when_it_exits_even_if_its_child_holds_the_output(pids: Path) -> None:
    """exit 0 with a background child keeping stdout open is a success at once, not a
    timeout; the child, left in the hook's group, is ended with it."""
    started = time.monotonic()
    [run] = run_hooks("after_rotate", sh(f"sleep 600 & echo $! >> {pids}; echo done"), b"", 30)
    elapsed = time.monotonic() - started
    assert run.ok and run.status == 0 and run.problem == "", run
    assert "done" in run.output
    assert elapsed < 1.5, elapsed
    [child] = recorded(pids)
    assert not alive(child), "the hook's leftover is ended with its group"


def test_output_kept_in_memory_is_the_head_and_the_tail(pids: Path) -> None:
    """200 MB of output: the first and last HEAD_TAIL bytes are kept, the rest counted."""
    size = 200_000_000
    script = f"echo $$ >> {pids}; echo FIRST; yes | head -c {size}; echo LAST"
    [run] = run_hooks("after_rotate", sh(script), b"", 120)
    assert run.ok, run.describe()
    total = len("FIRST\n") + size + len("LAST\n")
    assert run.dropped == total - 2 * HEAD_TAIL
    assert run.output.startswith("FIRST\ny\ny\n")
    assert run.output.endswith("y\ny\nLAST\n")
    assert f"[... {run.dropped} bytes of output dropped ...]" in run.output
    assert len(run.output) < 2 * HEAD_TAIL + 100


def test_a_timeout_ends_the_hooks_whole_process_group(pids: Path) -> None:
    """The hook and the grandchild it started are both gone when run_hooks returns."""
    script = f"echo $$ >> {pids}; sleep 600 & echo $! >> {pids}; wait"
    started = time.monotonic()
    [run] = run_hooks("after_rotate", sh(script), b"", 1.0)
    assert time.monotonic() - started < 1.0 + GROUP_GRACE + 1.0
    assert not run.ok and run.status is None
    assert run.describe().endswith("timed out after 1s (its process group was ended)")
    hook, grandchild = recorded(pids)
    assert not alive(hook)
    assert not alive(grandchild), "the timeout ended only the direct child, not its group"


def test_a_stop_ends_a_hook_that_ignores_sigterm(pids: Path) -> None:
    """cancel (the daemon's SIGTERM) ends the group: SIGTERM, then SIGKILL after the grace;
    the next hook of the event is not started."""
    cancel = threading.Event()
    script = f"trap '' TERM; echo $$ >> {pids}; sleep 600 & echo $! >> {pids}; wait"
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    runs = run_hooks("after_rotate", (*sh(script), ("true",)), b"", 600, cancel)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 + GROUP_GRACE + 1.5, elapsed
    [run] = runs
    assert run.status is None and "keysyncd is stopping" in run.problem
    assert not any(alive(pid) for pid in recorded(pids))
    [late] = run_hooks("on_failure", sh("true"), b"", 10, cancel)
    assert late.problem == "was not run: stopping"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("kill -9 $$", "was killed by signal 9 (SIGKILL)"),
        ("exit 3", "exited with status 3"),
    ],
)
def test_how_a_hook_ended_is_said_in_words(script: str, expected: str) -> None:
    [run] = run_hooks("after_rotate", sh(script), b"", 10)
    assert not run.ok
    assert run.describe() == f"after_rotate hook 'sh -c {script}' {expected}"


def test_a_missing_hook_could_not_run_and_never_says_status_none(tmp_path: Path) -> None:
    [run] = run_hooks("after_rotate", ((str(tmp_path / "absent"),),), b"", 10)
    assert run.status is None and not run.ok
    assert "could not run: No such file or directory" in run.describe()
    for block in (
        HookBlock(run.command, run.status, 1.0, run.problem),
        HookBlock(("migrate",), None, 1.0),  # journaled before it started, never finished
        HookBlock(("migrate",), -9, 1.0),
    ):
        assert "None" not in block.describe(), block
    assert "did not finish" in HookBlock(("migrate",), None, 1.0).describe()
    refused = HookRun("after_rotate", ("migrate",), None, "writable by others\n", 0.0)
    assert refused.describe() == "after_rotate hook 'migrate' could not run: writable by others"


def test_the_document_reaches_stdin_even_when_the_hook_does_not_read_it(tmp_path: Path) -> None:
    """A document larger than a pipe's buffer never blocks keysyncd."""
    document = b"x" * 1_000_000
    [ignoring] = run_hooks("on_failure", sh("exit 0"), document, 10)
    assert ignoring.ok
    [reading] = run_hooks("on_failure", sh("wc -c"), document, 10)
    assert reading.output.strip() == "1000000"
