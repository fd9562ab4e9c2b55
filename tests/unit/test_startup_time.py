"""Start-up time: ``check-config``, ``status`` and ``plan`` start within BOUND times a bare
interpreter (``python -c pass``), both measured in the same run, each the lower quartile of
several runs interleaved (an undisturbed run's, see SERIES), as a ratio: it
holds on a slow machine as on a fast one. The time is the process's CPU time (``started``).

Issue 20 asks for 5x. Measured here: 8.2x before it, 5.4-6.1x after a first pass
(APScheduler's cron trigger without its package's version lookup and without asyncio;
cryptography only when a JWS key is handled), then, side by side with that first pass (three
rounds, a loaded machine): check-config 5.2-5.9x -> 4.8-5.5x, status 6.3-6.4x -> 5.9-6.1x,
plan 6.0-6.3x -> 5.4-5.8x, about 9 ms less (cryptography.fernet only when a key is made, no
statistics, no secrets). A second pass (tests/unit/test_startup_lazy.py: no JWS model, report
model, hook word rules, signal, socket or shutil for fernet keys; a parser of the named
command's group alone), side by side with main before it (eight rounds of this test's own
measure, a loaded machine): check-config 5.2-5.8x (median 5.6) -> 4.3-4.7x (4.6), status
5.5-6.0x (5.8) -> 4.5-4.9x (4.8), plan 5.5-5.8x (5.6) -> 4.6-4.9x (4.7), about 20 ms less
(115-145 -> 91-115 ms); of it the lazy imports about 0.7x, the help width without shutil and
the trial parser about 0.1x each. BOUND 5 then passed 7, 8 and 7
of three series of eight runs (each failure 5.0x: status 105 ms to 21, plan 113 ms to 23).
A third pass took about 8 ms more off: the cyclic garbage collector off while a light command
starts (``cli.main``: 27 collections, about 4 ms, down to 2), keystone's file names apart from
``core.view``'s entries (``core.names``), hashlib (OpenSSL's load, 2.5 ms) only when something
is digested, and no rotation period sampled while nothing is due. Side by side with main
before it, with two CPU burners and a helper's tests running: check-config 4.6-4.7x ->
4.3-4.5x, status 4.8-4.9x -> 4.5-4.75x, plan 4.8-4.9x -> 4.6-4.75x; quiet, 4.2-4.6x. BOUND
is 5, as issue 20 asks. What remains, in CPU on Python 3.11: creating keysyncd's frozen
dataclasses (about 0.5 ms each: 3.11 compiles six methods for each), yaml's import (10 ms, 3.5
of them its reader's regex), dataclasses' own import (inspect, 8 ms), logging (6 ms, which
tzlocal, under APScheduler, imports anyway), zoneinfo's sysconfig (2 ms), and the run itself
(the parser, the pure-Python YAML loader, sampling the schedule).

Both read compiled bytecode from one cache made for the test, as an installed keysyncd
(pip compiles it) does: a run that compiles keysyncd's sources every time measures the
compiler. The import structure that keeps them light is pinned by tests/unit/test_startup.py
and test_startup_lazy.py (which modules load, without timing) and the last test here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_startup import loaded

BOUND = 5.0  # times a bare interpreter's CPU time, as issue 20 asks
RUNS = 15
# A busy machine disturbs some runs (measured: with two CPU burners and a helper's tests on
# the two cores, 2 of 5 single series over 5.0x, at 5.1x), and on a shared host a single
# lucky bare run (22 ms among 24-25) moved the fastest-of-15 ratio from 4.6x to 5.2x: each
# command is judged by the lower quartile of its runs (``typical``), which neither one lucky
# nor one disturbed run moves, and while the bound is not met another series runs, up to
# SERIES. A real regression stays over it in every series; a quiet machine needs one.
SERIES = 3


def typical(times: list[float]) -> float:
    """Return the lower quartile of ``times``: an undisturbed run's, not a lucky one's."""
    return sorted(times)[len(times) // 4]


def started(argv: list[str], environment: dict[str, str]) -> float:
    """Return the CPU time (user and system) one ``python ARGV`` took to its exit.

    CPU time, not wall time: a start is all computing (imports), and on a shared machine
    the wall time mostly measures how long the process waited for a core.
    """
    process = subprocess.Popen(
        [sys.executable, *argv],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0  # reaped here: Popen must not wait for it again
    return usage.ru_utime + usage.ru_stime


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Return an environment whose bytecode cache is the test's own (warmed by the first run)."""
    environment = dict(os.environ)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    environment["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    return environment


@pytest.mark.parametrize(
    ("config", "argv"),
    [("plain", ["check-config"]), ("nodes", ["status"]), ("nodes", ["plan"])],
    ids=["check-config", "status", "plan"],
)
def test_light_commands_start_within_bound_times_a_bare_interpreter(
    startup_controller: dict[str, Path], compiled: dict[str, str], config: str, argv: list[str]
) -> None:
    command = ["-m", "keysyncd", "-c", str(startup_controller[config]), *argv]
    started(command, compiled)  # compiles into the cache: not measured
    started(["-c", "pass"], compiled)
    bare: list[float] = []
    light: list[float] = []
    for _ in range(SERIES):  # more only while over the bound: see SERIES
        for _ in range(RUNS):
            bare.append(started(["-c", "pass"], compiled))
            light.append(started(command, compiled))
        ratio = typical(light) / typical(bare)
        if ratio <= BOUND:
            break
    assert ratio <= BOUND, (
        f"keysyncd {' '.join(argv)} took {typical(light) * 1000:.0f} ms of CPU, {ratio:.1f}x a "
        f"bare interpreter ({typical(bare) * 1000:.0f} ms); see python -X importtime"
    )


@pytest.mark.parametrize(
    ("config", "argv"),
    [("plain", ["check-config"]), ("nodes", ["status"]), ("nodes", ["plan"])],
    ids=["check-config", "status", "plan"],
)
def test_the_cron_trigger_comes_without_its_package_version_lookup_or_asyncio(
    tmp_path: Path, startup_controller: dict[str, Path], config: str, argv: list[str]
) -> None:
    """What the time test measures, without timing: the cron trigger is loaded (the library
    still parses the schedules), its costly neighbours are not."""
    code, modules = loaded(tmp_path, "-c", str(startup_controller[config]), *argv)
    assert code in (0, 1, 2)
    assert "apscheduler.triggers.cron" in modules
    assert {"importlib.metadata", "asyncio", "email"} & modules == set()
