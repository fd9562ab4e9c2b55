"""The mutation gate: break each safety rule on purpose and check the tests notice.

``scripts/mutants`` runs this module. Every mutant of ``scripts/mutants.toml`` is applied
in a copy of the project (never in the checkout), its tests run against the copy, and the
file is restored before the next one. A mutant is killed when its tests fail (or time out);
it survives when they pass. Exit 0 only if every mutant was killed; 1 if one survived; 2 if
the gate itself cannot be trusted (a pattern no longer matches exactly once, the tests fail
without any mutation, or the copy is not what the tests import).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIST = ROOT / "scripts" / "mutants.toml"
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
COPIED = (
    "keysyncd",
    "tests",
    "schemas",
    "pyproject.toml",
    "config.yaml",
    "README.md",
    "systemd",
    "ansible",
    "monitoring",
)
PER_MUTANT_TIMEOUT = 180.0


class GateError(Exception):
    """The gate cannot be trusted (its message says why)."""


@dataclass(frozen=True)
class Mutant:
    """One deliberate break: ``edits`` (pattern, replacement) in ``file``; ``tests`` notice."""

    intent: str
    file: str
    edits: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]

    def apply(self, original: str) -> str:
        """Return ``original`` mutated; raise GateError if a pattern is not there exactly once."""
        text = original
        for pattern, replacement in self.edits:
            count = text.count(pattern)
            if count != 1:
                raise GateError(
                    f"{self.intent}: pattern found {count} times in {self.file}, not once "
                    f"(the code moved: update {LIST.relative_to(ROOT)}): {pattern.strip()!r}"
                )
            text = text.replace(pattern, replacement)
        return text


def load_mutants(path: Path = LIST) -> list[Mutant]:
    """Return the mutants listed in ``path``; raise GateError if one is malformed."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise GateError(f"{path}: {error}") from None
    mutants = []
    for number, entry in enumerate(document.get("mutant", []), start=1):
        try:
            mutants.append(
                Mutant(
                    intent=str(entry["intent"]),
                    file=str(entry["file"]),
                    edits=tuple((str(p), str(r)) for p, r in entry["edits"]),
                    tests=tuple(str(t) for t in entry["tests"]),
                )
            )
        except (KeyError, TypeError, ValueError) as error:
            raise GateError(f"{path}: mutant {number} is malformed: {error!r}") from None
        if not mutants[-1].tests or not mutants[-1].edits:
            raise GateError(f"{path}: mutant {number} has no edits or no tests")
    return mutants


def copy_project(target: Path) -> None:
    """Copy what the tests need (the package, tests and their data) to ``target``."""
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", ".pytest_cache")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, target / name)


def adopt_orphans() -> None:
    """Make this process the child subreaper of everything it starts (Linux prctl).

    A broken rule can leave a process behind that outlives its parent: a node's SFTP
    session blocked opening a FIFO the mutated code should never have opened is orphaned
    when its sshd monitor exits, and would be re-parented to init, out of the fleet's
    reach. As subreaper, the gate gets those orphans and ends them (``end_orphans``).
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def end_orphans() -> int:
    """SIGKILL and reap every child of this process (none is ours once a pytest run has
    returned: they are orphans adopted as subreaper); return how many were still running
    (those that had already exited, zombies, are only reaped)."""
    mine = str(os.getpid())
    ended = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, parent = stat[stat.rindex(")") + 2 :].split()[:2]  # fields 3 and 4
        if parent != mine:
            continue
        if state != "Z":
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
            ended += 1
        with contextlib.suppress(ChildProcessError):
            os.waitpid(int(entry), 0)
    return ended


def pytest(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int | None, float, str]:
    """Run ``tests`` against ``copy``; return (exit code or None on timeout, seconds, the
    last lines pytest printed: what failed, for a baseline that does not pass).

    Whatever the run left behind (see adopt_orphans) is ended before this returns.
    """
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=copy, env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - started, ""
    finally:
        if orphans := end_orphans():
            print(f"  (ended {orphans} process(es) this run left behind)", flush=True)
    tail = "\n".join(done.stdout.decode(errors="replace").splitlines()[-25:])
    return done.returncode, time.monotonic() - started, tail


def check_copy_is_imported(copy: Path) -> None:
    """Raise GateError unless the tests run in ``copy`` import keysyncd from it."""
    env = {**os.environ, "PYTHONPATH": str(copy)}
    found = subprocess.run(
        [sys.executable, "-c", "import keysyncd; print(keysyncd.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not found.startswith(str(copy)):
        raise GateError(f"the tests would import keysyncd from {found!r}, not from the copy")


def run(mutants: list[Mutant], keep: bool = False) -> int:
    """Run the gate over ``mutants``; print one line each and a summary; return the exit code."""
    for mutant in mutants:  # every pattern is checked before anything runs
        mutant.apply((ROOT / mutant.file).read_text())
    adopt_orphans()
    copy = Path(tempfile.mkdtemp(prefix="keysyncd-mutants-"))
    try:
        copy_project(copy)
        check_copy_is_imported(copy)
        every_test = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
        code, seconds, tail = pytest(copy, every_test, PER_MUTANT_TIMEOUT * 3)
        if code != 0:
            print(tail, flush=True)
            raise GateError(
                f"the mutants' tests fail without any mutation (pytest exit {code}): fix them first"
            )
        print(f"baseline: the {len(every_test)} test selections pass unmutated ({seconds:.0f}s)")
        survived = 0
        for mutant in mutants:
            path = copy / mutant.file
            original = path.read_text()
            path.write_text(mutant.apply(original))
            try:
                code, seconds, _ = pytest(copy, mutant.tests, PER_MUTANT_TIMEOUT)
            finally:
                path.write_text(original)
            if code in (2, 3, 4, 5):
                raise GateError(f"{mutant.intent}: pytest could not run its tests (exit {code})")
            verdict = "survived" if code == 0 else "killed"
            survived += code == 0
            note = " (timeout)" if code is None else ""
            print(f"{verdict:8} {seconds:5.1f}s  {mutant.intent}{note}", flush=True)
        killed = len(mutants) - survived
        print(f"{killed} killed, {survived} survived")
        return 1 if survived else 0
    finally:
        if keep:
            print(f"the copy is kept in {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of scripts/mutants; return its exit code."""
    parser = argparse.ArgumentParser(prog="scripts/mutants", description=__doc__)
    parser.add_argument("-k", dest="select", help="only mutants whose intent contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--keep", action="store_true", help="keep the copy (for debugging)")
    args = parser.parse_args(argv)
    try:
        mutants = load_mutants()
        if args.select:
            mutants = [m for m in mutants if args.select.lower() in m.intent.lower()]
        if args.list:
            for mutant in mutants:
                print(f"{mutant.intent}  [{mutant.file}]")
            return 0
        if not mutants:
            raise GateError("no mutant selected")
        return run(mutants, args.keep)
    except GateError as error:
        print(f"mutants: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
