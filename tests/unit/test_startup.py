"""Start-up: each command loads only what it uses (lazy imports), read from ``sys.modules``
of a fresh interpreter that ran the command: no timing, so it holds on a busy machine.

``--help``, ``status``, ``plan``, ``report`` and ``check-config`` load no SSH library
(paramiko), no scheduler (apscheduler.schedulers), no prometheus_client and no watchdog;
nor what only making keys or random names needs (cryptography: Fernet keys, made by
``KeyKind.generate``; ``secrets``: ``os.urandom`` names the temp files) or ``statistics``
(the clock guard's median is written out): each cost them a few milliseconds to start
(tests/unit/test_startup_time.py).
check-config loads paramiko only when nodes are configured: reading the identity file and
known_hosts keys is its job then.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("paramiko", "apscheduler.schedulers", "prometheus_client", "watchdog")
LAZY = ("cryptography", "secrets", "statistics")  # needed by no light command either
RUNNER = """
import json, os, sys
from keysyncd.commands.cli import main
with open(os.devnull, "w") as quiet:
    sys.stdout = sys.stderr = quiet
    code = main(sys.argv[2:])
with open(sys.argv[1], "w") as found:
    json.dump({"code": code, "modules": sorted(sys.modules)}, found)
"""


def loaded(tmp_path: Path, *argv: str) -> tuple[int, set[str]]:
    """Return (exit code, every module loaded) of ``keysyncd ARGV`` in a fresh interpreter."""
    result = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", RUNNER, str(result), *argv], check=True, timeout=120)
    document = json.loads(result.read_text())
    return document["code"], set(document["modules"])


def heavy(modules: set[str], prefixes: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_help_loads_nothing_but_the_parser(tmp_path: Path) -> None:
    code, modules = loaded(tmp_path, "--help")
    assert code == 0
    unexpected = heavy(
        modules,
        (*HEAVY, "apscheduler", "yaml", "cryptography", "logging", "dataclasses"),
    )
    assert unexpected == []
    assert heavy(modules, ("keysyncd",)) == [
        "keysyncd",
        "keysyncd.commands",
        "keysyncd.commands.cli",
        "keysyncd.commands.exits",
        "keysyncd.commands.output",
        "keysyncd.commands.parser",
    ]


@pytest.mark.parametrize(
    ("config", "argv"),
    [
        ("plain", ["check-config"]),
        ("nodes", ["status"]),
        ("nodes", ["status", "--json"]),
        ("nodes", ["plan"]),
        ("nodes", ["report", "list"]),
        ("nodes", ["report", "verify-chain"]),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else value,
)
def test_light_commands_load_no_ssh_scheduler_metrics_or_watch_library(
    tmp_path: Path, startup_controller: dict[str, Path], config: str, argv: list[str]
) -> None:
    code, modules = loaded(tmp_path, "-c", str(startup_controller[config]), *argv)
    assert code in (0, 1, 2)
    assert heavy(modules) == [], argv
    assert heavy(modules, LAZY) == [], argv


def test_check_config_with_nodes_loads_paramiko_only(
    tmp_path: Path, startup_controller: dict[str, Path]
) -> None:
    _, modules = loaded(tmp_path, "-c", str(startup_controller["nodes"]), "check-config")
    assert heavy(modules, ("apscheduler.schedulers", "prometheus_client", "watchdog")) == []


def test_the_check_sees_heavy_imports_where_they_are_needed(
    tmp_path: Path, startup_controller: dict[str, Path]
) -> None:
    """The acting commands do load the SSH library: the test can see it (prometheus_client
    only comes with a metrics textfile configured)."""
    code, modules = loaded(tmp_path, "-c", str(startup_controller["plain"]), "rotate", "--dry-run")
    assert code == 0
    assert "paramiko" in set(heavy(modules))
    assert "prometheus_client" not in set(heavy(modules))
