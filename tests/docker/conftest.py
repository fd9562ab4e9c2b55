"""The container tier: whole Debian machines in containers (keysyncd.testing.containers).

A Docker engine is found (``$DOCKER_HOST``, or the suite's own engine that
``scripts/docker-engine`` starts; ``scripts/test`` does it first). When this session had
to start it, the session stops it at the end, by its PID. The tests skip, with the
reason, only where no engine can be had. The images are built once per recipe and cached
by their hash. At the end of the session nothing it made may be left: every fleet's
containers and network are gone, or the session fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "scripts" / "docker-engine"
TIMINGS: dict[str, float] = {}  # what the terminal summary reports
RUN_IDS: list[str] = []  # fleets made by this session: none may outlive it
_ENGINE_STATE: dict[str, Any] = {}


def _engine(*args: str) -> str:
    result = subprocess.run(
        [str(ENGINE), *args], capture_output=True, text=True, timeout=180, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/docker-engine {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def _answers(host: str) -> bool:
    env = {**os.environ, "DOCKER_HOST": host}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = subprocess.run(["docker", "version"], env=env, capture_output=True, timeout=15)
        return probe.returncode == 0
    return False


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """Return the DOCKER_HOST of an engine that answers; skip if none can be had here."""
    if "host" in _ENGINE_STATE:
        return str(_ENGINE_STATE["host"])
    host = os.environ.get("DOCKER_HOST", "")
    if not (host and _answers(host)):
        # Hold the suite engine's users lock from before start until after the last test,
        # so a concurrent run's `stop` leaves the engine to us (see scripts/docker-engine).
        directory = Path(_engine("dir"))
        directory.mkdir(parents=True, exist_ok=True)
        users = open(directory / "users.lock", "a")  # noqa: SIM115 - held for the session
        fcntl.flock(users, fcntl.LOCK_SH)
        started = time.monotonic()
        host = _engine("start")
        TIMINGS["engine start"] = time.monotonic() - started
        _ENGINE_STATE["users"] = users
        if not host:
            pytest.skip("no Docker engine answers and none can be started here (root+docker.io)")
        os.environ["DOCKER_HOST"] = host
    _ENGINE_STATE["host"] = host
    return host


@pytest.fixture(scope="session")
def images(docker_engine: str) -> Any:
    """Return the images' tags (keysyncd.testing.containers_image), built if missing."""
    import docker

    from keysyncd.testing.containers_image import ensure_images

    started = time.monotonic()
    built: list[str] = []
    tags = ensure_images(docker.from_env(timeout=600), built.append)
    TIMINGS["images" + (" (built: " + "; ".join(built) + ")" if built else " (cached)")] = (
        time.monotonic() - started
    )
    return tags


@contextlib.contextmanager
def _fleets(images: Any, root: Path) -> Iterator[Callable[..., Any]]:
    """Yield a factory of started ContainerFleets under ``root``; all removed on exit."""
    from keysyncd.testing.containers import ContainerFleet

    fleets: list[ContainerFleet] = []

    def factory(count: int = 3, **kwargs: Any) -> ContainerFleet:
        fleet = ContainerFleet(root / f"cfleet{len(fleets)}", count, images, **kwargs)
        fleets.append(fleet)
        RUN_IDS.append(fleet.run_id)
        return fleet.start()

    try:
        yield factory
    finally:
        for fleet in reversed(fleets):
            fleet.stop()


@pytest.fixture
def make_container_fleet(images: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Return a factory of started ContainerFleets under tmp_path; all removed at teardown."""
    with _fleets(images, tmp_path) as factory:
        yield factory


@pytest.fixture(scope="session")
def make_session_fleet(
    images: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Any]]:
    """Return a factory of fleets that live for the session (removed at its end)."""
    with _fleets(images, tmp_path_factory.mktemp("session-fleets")) as factory:
        yield factory


def _leftovers() -> list[str]:
    """Return the containers and networks of this session's fleets that still exist."""
    if not RUN_IDS or "host" not in _ENGINE_STATE:
        return []
    import docker

    client = docker.from_env(timeout=60)
    found = []
    for run_id in RUN_IDS:
        label = {"label": f"keysyncd.test={run_id}"}
        found += [f"container {c.name}" for c in client.containers.list(all=True, filters=label)]
        found += [f"network {n.name}" for n in client.networks.list(filters=label)]
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session if anything it made is left; stop the engine it had to start."""
    problems = []
    try:
        problems += _leftovers()
    except Exception as error:  # the engine itself may be gone: say so, do not hide it
        problems.append(f"cannot list leftovers: {error}")
    users = _ENGINE_STATE.pop("users", None)
    if users is not None:
        users.close()
        try:
            _engine("stop")
            if _engine("status").startswith("ours"):
                problems.append("the dockerd this session started is still running")
        except RuntimeError as error:
            problems.append(str(error))
    if problems:
        TIMINGS.clear()
        session.config.stash[_PROBLEMS] = problems
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_PROBLEMS = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report the engine and image times, and anything the session left behind."""
    for what, seconds in TIMINGS.items():
        terminalreporter.write_line(f"container tier: {what}: {seconds:.1f}s")
    for problem in terminalreporter.config.stash.get(_PROBLEMS, []):
        terminalreporter.write_line(f"container tier LEFT BEHIND: {problem}", red=True)


@pytest.fixture(scope="session")
def deployed(
    make_session_fleet: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Return the Ansible role applied to fresh machines: controller + 3 bare Debian hosts.

    Keys: fleet, site, check (``--check`` on the fresh hosts), first and second (the two
    applies), controller (keysyncd.testing.containers_controller.Controller).
    """
    from keysyncd.testing.containers_controller import Controller
    from tests.docker.ansible_run import Site

    fleet = make_session_fleet(3, node_image="host")
    site = Site(fleet, tmp_path_factory.mktemp("ansible"))
    timings = {}
    results: dict[str, Any] = {"fleet": fleet, "site": site, "controller": Controller(fleet)}
    for name, args in (("check", ("--check",)), ("first", ()), ("second", ())):
        started = time.monotonic()
        results[name] = site.play(*args)
        timings[name] = time.monotonic() - started
        if results[name].returncode != 0:
            break
    for name, seconds in timings.items():
        TIMINGS[f"ansible-playbook {name}"] = seconds
    return results
