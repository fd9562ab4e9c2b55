"""The folder tree is the architecture: each layer imports only what its package says.

core (pure model and decisions) <- config <- io (disk, SSH, state, reports, metrics) <-
actions <- commands (CLI, daemon, render). Imports are read with ``ast``, so the rules hold
for code that is never run in a test, too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from keysyncd.core.vocabulary import NodeStatus, Outcome

PACKAGE = Path(__file__).resolve().parents[2] / "keysyncd"
LAYERS = ("core", "config", "io", "actions", "commands")
# Everything a layer below may not import. "testing" is test tooling, not part of keysyncd.
FORBIDDEN = {
    "core": {"keysyncd.config", "keysyncd.io", "keysyncd.actions", "keysyncd.commands"},
    "config": {"keysyncd.io", "keysyncd.actions", "keysyncd.commands"},
    "io": {"keysyncd.actions", "keysyncd.commands"},
    "actions": {"keysyncd.commands"},
    "commands": set(),
}
# Core computes: it never touches the disk, the network, processes, threads or the clock.
IO_MODULES = {
    "os",
    "socket",
    "subprocess",
    "threading",
    "time",
    "shutil",
    "tempfile",
    "fcntl",
    "signal",
    "pathlib",
    "io",
    "select",
    "asyncio",
    "paramiko",
    "watchdog",
    "prometheus_client",
    "yaml",
    "logging",
    "secrets",
    "random",
    "pwd",
    "grp",
}
CLOCK_CALLS = {"time", "now", "utcnow", "today", "monotonic"}


# io's rooms: local disk below the nodes and the running process, which never meet.
ROOMS = ("local", "remote", "runtime")
FORBIDDEN_ROOMS = {
    "local": {"keysyncd.io.remote", "keysyncd.io.runtime", "paramiko"},
    "remote": {"keysyncd.io.runtime"},
    "runtime": {"keysyncd.io.remote", "paramiko"},
}


def modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Return every module ``path`` imports (``from a.b import c`` gives a.b and a.b.c)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def within(name: str, prefixes: set[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_a_layer_above_it(layer: str) -> None:
    assert modules(layer), f"keysyncd/{layer}/ holds modules"
    for path in modules(layer):
        wrong = sorted(name for name in imported(path) if within(name, FORBIDDEN[layer]))
        assert not wrong, f"{path.relative_to(PACKAGE)} imports {wrong}"


def test_io_is_only_its_rooms() -> None:
    """Every IO module lives in a room: nothing but the package's own ``__init__`` is flat."""
    flat = sorted(p.name for p in (PACKAGE / "io").glob("*.py") if p.name != "__init__.py")
    assert flat == []
    assert sorted(
        p.name for p in (PACKAGE / "io").iterdir() if p.is_dir() and p.name != "__pycache__"
    ) == sorted(ROOMS)


@pytest.mark.parametrize("room", ROOMS)
def test_no_io_room_imports_a_room_it_may_not(room: str) -> None:
    assert modules(f"io/{room}"), f"keysyncd/io/{room}/ holds modules"
    for path in modules(f"io/{room}"):
        wrong = sorted(n for n in imported(path) if within(n, FORBIDDEN_ROOMS[room]))
        assert not wrong, f"{path.relative_to(PACKAGE)} imports {wrong}"
    doc = ast.get_docstring(ast.parse((PACKAGE / "io" / room / "__init__.py").read_text()))
    assert doc and "May import" in doc, room


def test_core_imports_no_io_module_and_reads_no_clock() -> None:
    for path in modules("core"):
        tree = ast.parse(path.read_text())
        wrong = sorted(name for name in imported(path) if name.split(".")[0] in IO_MODULES)
        assert not wrong, f"{path.relative_to(PACKAGE)} imports {wrong}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in CLOCK_CALLS, (
                    f"{path.relative_to(PACKAGE)}:{node.lineno} reads the clock: pass the time in"
                )


def test_nothing_outside_commands_imports_commands() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "commands" in path.relative_to(PACKAGE).parts or path.name == "__main__.py":
            continue
        wrong = sorted(n for n in imported(path) if within(n, {"keysyncd.commands"}))
        assert not wrong, f"{path.relative_to(PACKAGE)} imports {wrong}"


def test_the_scheduler_only_wires() -> None:
    """It hands jobs to the daemon's queue: it runs no action and touches no file itself."""
    allowed = {"keysyncd.config", "keysyncd.core.schedule"}
    names = {n for n in imported(PACKAGE / "commands" / "scheduler.py") if n.startswith("keysyncd")}
    assert all(within(name, allowed) for name in names), names


def test_only_the_commit_saves_state() -> None:
    """One commit per action: the journal is saved in actions/context.py and nowhere else."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() in ("actions/context.py", "io/local/state.py"):
            continue
        assert "save_state" not in path.read_text(), f"{path.relative_to(PACKAGE)} saves state"


def test_every_layer_says_what_it_may_import() -> None:
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc and "May import" in doc, layer


def test_statuses_and_outcomes_are_named_only_by_the_shared_vocabulary() -> None:
    """No module spells a node status or an outcome as a string literal (``status ==
    "in_sync"``, ``in ("updated", "repaired")``): "a good node" and "the outcome" are
    decided by core/vocabulary.py's GOOD and outcome_of alone, so they cannot disagree."""
    words = {str(word) for word in (*NodeStatus, *Outcome)}
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "vocabulary.py" or "testing" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Compare):
                continue
            for operand in ast.walk(node):
                if isinstance(operand, ast.Constant) and operand.value in words:
                    spelled.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {operand.value!r}")
    assert spelled == []
