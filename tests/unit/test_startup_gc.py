"""The cyclic garbage collector during a command (``keysyncd.commands.cli.main``): off while a
light command starts and runs (its passes over the objects start-up makes cost about 4 ms of
a 100 ms start: tests/unit/test_startup_time.py), on again before a command that contacts
nodes (a long run, and paramiko makes cycles), and the caller's state back on return (tests
call ``main`` in their own process)."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keysyncd.commands import acting, views
from keysyncd.commands.cli import main


@pytest.fixture
def collector() -> Iterator[None]:
    """Leave the collector as found, whatever a test does to it."""
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def seen_by(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, run: bool = True
) -> list[bool]:
    """Return the list a wrapper of ``module.name`` fills with ``gc.isenabled()`` at each call
    (``run``: the command itself runs after, else it returns 0 at once)."""
    seen: list[bool] = []
    real = getattr(module, name)

    def probe(args: argparse.Namespace, *rest: Any) -> int:
        seen.append(gc.isenabled())
        return int(real(args, *rest)) if run else 0

    monkeypatch.setattr(module, name, probe)
    return seen


def test_a_light_command_runs_without_the_collector_and_gives_it_back(
    startup_controller: dict[str, Path], monkeypatch: pytest.MonkeyPatch, collector: None
) -> None:
    seen = seen_by(monkeypatch, views, "cmd_status")
    gc.enable()
    assert main(["-c", str(startup_controller["nodes"]), "status"]) in (0, 1)
    assert seen == [False]
    assert gc.isenabled()


def test_a_command_that_contacts_nodes_runs_with_the_collector(
    startup_controller: dict[str, Path], monkeypatch: pytest.MonkeyPatch, collector: None
) -> None:
    seen = seen_by(monkeypatch, acting, "cmd_verify", run=False)
    gc.enable()
    assert main(["-c", str(startup_controller["plain"]), "verify"]) == 0
    assert seen == [True]
    assert gc.isenabled()


def test_a_caller_without_the_collector_gets_it_back_off(
    startup_controller: dict[str, Path], monkeypatch: pytest.MonkeyPatch, collector: None
) -> None:
    """Even after a command that turned it on."""
    seen = seen_by(monkeypatch, acting, "cmd_verify", run=False)
    gc.disable()
    assert main(["-c", str(startup_controller["plain"]), "verify"]) == 0
    assert seen == [True]
    assert not gc.isenabled()
