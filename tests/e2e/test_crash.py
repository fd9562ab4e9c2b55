"""Crash safety (SPEC safety rule 4): ``kill -9`` of ``keysyncd rotate`` at any instant.

A real 3-node OpenSSH fleet and the installed ``keysyncd`` console script. After ``init``,
every trial starts ``keysyncd rotate`` and SIGKILLs it, either after a seeded random delay
spread over the duration of an uninterrupted rotate (re-measured whenever a random trial
runs uncut: see ``uncut``), or the moment a polled event shows it is inside a chosen window
(the journal holds a pending rotation, the new primary appears locally, a temp file / the
new primary / a replaced ``0`` appears on a node). Two windows last microseconds (between the
local renames of N and of 0, and between the rename of 0 and the retirement): there
``python -c INJECTOR`` runs the same CLI and the process SIGKILLs itself right after that
``os.rename``. After each kill, before anything repairs it:

- the local repository and every node load with keystone's loader, hold ``0`` and a
  primary, and have no empty or partial integer-named file (``.keysyncd-*`` temp files may
  be left behind: keystone ignores non-integer names);
- the state journal still parses (it is written atomically);
- the fleet-wide primary invariant of safety rule 3 holds (see ``assert_primaries_shared``);

and then ``keysyncd sync`` and ``keysyncd verify`` exit 0 (so the killed process left no
lock), every node equals the controller byte for byte, no temp file is left on any node,
the journal has no pending rotation, and the controller is either unchanged or exactly one
rotation ahead (the old staged key is the new primary and the old primary is kept).

Each trial's kill point is classified from what it left behind; the counts are printed
(``pytest -s``) and both the local rotation and the push must be hit at least twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from keysyncd.core.kinds import KINDS
from keysyncd.io.local.fsutil import TEMP_PREFIX
from keysyncd.io.local.state import load_state
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.keystone_compat import key_names, load_keys, multifernet

pytestmark = pytest.mark.fleet

SEED = 20261122
RANDOM_TRIALS = 24
TARGETS = ("journal", "local-primary", "node-temp", "node-phase1", "node-phase2")
TARGETED_REPEATS = 2  # each target twice: local rotation and push are hit deterministically
# Rename windows too short to poll (microseconds): the process SIGKILLs itself right after
# os.rename put the new primary N (or the new 0) in place in the local repository.
INJECTED = ("inject-after-rename-N", "inject-after-rename-0")
INJECTED_REPEATS = 2
INJECTOR = """
import fnmatch, os, signal, sys
function, pattern = sys.argv.pop(1), sys.argv.pop(1)
real = getattr(os, function)
def then_die(source, destination, *args, **kwargs):
    real(source, destination, *args, **kwargs)
    if fnmatch.fnmatchcase(os.fspath(destination), pattern):
        os.kill(os.getpid(), signal.SIGKILL)
setattr(os, function, then_die)
from keysyncd.commands.cli import main
sys.exit(main())
"""
POLL_INTERVAL = 0.0002  # the journal's pending window is a few ms (two fsyncs), a push ~50 ms
POLL_LIMIT = 10.0
MAX_POLLS = 50_000
MAX_RETRIES = 4  # a targeted trial that missed its event is run again, at most this often
MEASURED_ROTATIONS = 2
COMMAND_TIMEOUT = 60.0
REPOSITORY = "fernet-tokens"
KIND = KINDS["fernet"]
# token_expiration 1 s: keys demoted in an earlier trial are retired, so rotations also
# delete keys locally and on nodes (phase 2) and the repositories stay small.
REPOSITORY_CONFIG = {"max_active_keys": 3, "token_expiration": 1, "allow_expired_window": 0}

Digests = dict[int, str]


def keysyncd_command() -> list[str]:
    """Return the argv prefix of the installed console script (or ``python -m keysyncd``)."""
    script = shutil.which("keysyncd", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "keysyncd"]


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*keysyncd_command(), "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def key_files(directory: Path) -> dict[int, bytes]:
    return {int(name): (directory / name).read_bytes() for name in key_names(directory)}


def digests_of(directory: Path) -> Digests:
    return {i: hashlib.sha256(c).hexdigest() for i, c in key_files(directory).items()}


def temp_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith(TEMP_PREFIX))


def assert_loadable(where: str, directory: Path) -> None:
    """Assert ``directory`` is a valid repository as keystone would load it right now."""
    names = key_names(directory)
    for name in names:
        assert name == str(int(name)) and int(name) >= 0, f"{where}: non-canonical key {name!r}"
        problem = KIND.problem((directory / name).read_bytes())
        assert problem is None, f"{where}: key file {name} is not a whole key: {problem}"
    indices = {int(name) for name in names}
    assert 0 in indices, f"{where}: staged key 0 missing ({sorted(indices)})"
    assert max(indices) > 0, f"{where}: no primary ({sorted(indices)})"
    keys = load_keys(str(directory))
    assert len(keys) == len(indices), f"{where}: keystone loaded {len(keys)} of {len(indices)}"
    multifernet(str(directory))  # raises ValueError on a malformed key


def assert_primaries_shared(holders: dict[str, Path]) -> None:
    """Assert what safety rule 3 guarantees at every instant, hence after any kill.

    A node (or the controller) encrypts new tokens with its primary, the highest index;
    every other holder must be able to decrypt them. Rule 1 made every node hold the
    staged key ``0`` = s before the controller promoted it; the push then adds the new
    primary N (content s) on every node in phase 1, and only after phase 1 has finished
    everywhere does phase 2 replace ``0`` and delete retired keys. So at any instant each
    holder is either not yet rotated (primary N-1, staged s) or holds N = s, and the
    demoted primary N-1 is never retired in the rotation that demotes it (rule 2). Hence,
    for any two holders A and B, with A's primary at index i and content d, either

    - B holds index i with content d (same generation, or B already rotated), or
    - B is exactly one rotation behind: i == max(B) + 1 and B's staged key ``0`` is d.

    Secondaries may differ (a rotated node may already have deleted keys a lagging node
    still has: they are past their token lifetime by rule 2), so only primaries are
    compared. The functional form is also checked: a token made with any holder's keys
    (MultiFernet encrypts with the primary) decrypts with every other holder's keys.
    """
    digests = {name: digests_of(path) for name, path in holders.items()}
    for a, of_a in digests.items():
        index = max(of_a)
        for b, of_b in digests.items():
            if of_b.get(index) == of_a[index]:
                continue
            assert index == max(of_b) + 1 and of_b.get(0) == of_a[index], (
                f"primary {index} of {a} is neither in {b} nor {b}'s staged key "
                f"({a}: {sorted(of_a)}, {b}: {sorted(of_b)})"
            )
    fernets = {name: multifernet(str(path)) for name, path in holders.items()}
    for fernet in fernets.values():
        token = fernet.encrypt(b"crash-test")
        for other in fernets.values():
            other.decrypt(token)  # raises InvalidToken where a node would answer 401


@dataclass
class Trial:
    number: int
    mode: str  # "random" or a target name
    fraction: float | None = None  # random trials: where in an uninterrupted rotate to kill
    delay: float | None = None  # ... and the delay that meant when the trial ran
    hit: bool | None = None
    killed: bool = False
    point: str = ""
    detail: str = ""


class Controller:
    """The controller's paths and the pre-trial snapshot the kill points are judged against."""

    def __init__(self, config: Path, fleet: Fleet) -> None:
        self.config = config
        self.fleet = fleet
        self.local = config.parent / "keys"
        self.journal = config.parent / "state" / "repositories" / f"{REPOSITORY}.json"
        self.before: Digests = {}

    @property
    def new_primary(self) -> int:
        return max(self.before) + 1

    @property
    def staged(self) -> str:
        return self.before[0]

    def snapshot(self) -> None:
        self.before = digests_of(self.local)
        for node in self.fleet.nodes:
            assert digests_of(node.directory) == self.before, f"{node.name} not in sync"

    def holders(self) -> dict[str, Path]:
        return {"controller": self.local, **{n.name: n.directory for n in self.fleet.nodes}}

    def pending(self) -> bool:
        return json.loads(self.journal.read_text())["pending"] is not None

    # --- kill triggers: observable events inside the windows ----------------------------

    def trigger(self, target: str) -> Callable[[], bool]:
        new_primary, staged = str(self.new_primary), self.staged
        nodes = [n.directory for n in self.fleet.nodes]

        def journal() -> bool:
            try:
                return b'"pending": {' in self.journal.read_bytes()
            except FileNotFoundError:
                return False

        def node_zero_changed() -> bool:
            for directory in nodes:
                try:
                    content = (directory / "0").read_bytes()
                except FileNotFoundError:
                    continue
                if hashlib.sha256(content).hexdigest() != staged:
                    return True
            return False

        triggers: dict[str, Callable[[], bool]] = {
            "journal": journal,
            "local-primary": lambda: (self.local / new_primary).exists(),
            "node-temp": lambda: any(temp_files(d) for d in nodes),
            "node-phase1": lambda: any((d / new_primary).exists() for d in nodes),
            "node-phase2": node_zero_changed,
        }
        return triggers[target]

    # --- what a kill left behind ---------------------------------------------------------

    def classify(self) -> tuple[str, str]:
        """Return (kill point, detail) judged from the disk and journal after a kill."""
        local = digests_of(self.local)
        n, staged = self.new_primary, self.staged
        if self.pending():
            if n not in local:
                return "local rotation", "journaled, before the new primary was renamed"
            if local.get(0) == staged:
                return "local rotation", "new primary renamed, 0 not yet replaced"
            return "local rotation", "renamed, journal not yet committed"
        if local == self.before:
            return "before local rotation", ""
        states = [self._node_state(node.directory, local) for node in self.fleet.nodes]
        temps = sum(bool(temp_files(node.directory)) for node in self.fleet.nodes)
        detail = f"nodes {'/'.join(states)}" + (f", temp files on {temps}" if temps else "")
        if all(state == "old" for state in states) and not temps:
            return "after local rotation, before push", detail
        if all(state == "done" for state in states):
            return "after push (verify/report)", detail
        if any(state in ("phase2", "done") for state in states):
            return "push phase 2", detail
        return "push phase 1", detail

    def _node_state(self, directory: Path, local: Digests) -> str:
        held = digests_of(directory)
        if held == local:
            return "done"
        if held == self.before:
            return "old"
        if held.get(0) == self.staged:
            return "phase1"
        return "phase2"

    def assert_between_generations(self) -> None:
        """Assert each node holds the old state, the new one, or a rule-3 step in between."""
        n, staged = self.new_primary, self.staged
        new_staged = digests_of(self.local).get(0)
        phase2_started = False
        for node in self.fleet.nodes:
            held = digests_of(node.directory)
            for index, digest in held.items():
                if index == 0:
                    assert digest in (staged, new_staged), f"{node.name}: unknown key 0"
                    phase2_started |= digest != staged
                elif index == n:
                    assert digest == staged, f"{node.name}: new primary {n} is not old key 0"
                else:
                    assert self.before.get(index) == digest, f"{node.name}: unknown key {index}"
        if phase2_started:  # phase 2 only after phase 1 finished on every node
            for node in self.fleet.nodes:
                held = digests_of(node.directory)
                assert held.get(n) == staged, f"phase 2 began before {node.name} got key {n}"

    def assert_converged(self) -> None:
        """Assert the fleet after sync + verify: equal everywhere, no debris, one step at most."""
        local_files = key_files(self.local)
        after = digests_of(self.local)
        for node in self.fleet.nodes:
            assert key_files(node.directory) == local_files, f"{node.name} differs after sync"
            assert temp_files(node.directory) == [], f"{node.name}: temp files left after sync"
        assert temp_files(self.local) == [], "local temp files left after sync"
        assert load_state(self.journal.parents[1], REPOSITORY).pending is None
        n = self.new_primary
        if n in after:  # rolled forward: the old staged key is the primary, old primary kept
            assert max(after) == n and after[n] == self.staged and after[0] != self.staged
            assert after[n - 1] == self.before[n - 1], "old primary lost by the rotation"
            assert all(self.before.get(i) == d for i, d in after.items() if i not in (0, n))
        else:  # never started or rolled back: the state before the trial, except that the
            # sync may retire the oldest secondaries once that is safe (token_expiration 1 s)
            assert after.items() <= self.before.items(), "rolled back to something else"
            top = max(self.before)
            assert after.get(0) == self.before[0], "the staged key changed without a rotation"
            assert after.get(top) == self.before[top], "the primary changed without a rotation"
            oldest_kept = min(index for index in after if index > 0)
            retired = set(self.before) - set(after)
            assert all(index < oldest_kept for index in retired), "a newer key was retired"


def kill_when(proc: subprocess.Popen[bytes], event: Callable[[], bool]) -> bool:
    """SIGKILL ``proc`` as soon as ``event()`` is true; return False if it ended first.

    Bounded: at most MAX_POLLS polls and POLL_LIMIT seconds, then it is killed anyway.
    """
    deadline = time.monotonic() + POLL_LIMIT
    for _ in range(MAX_POLLS):
        if event():
            proc.send_signal(signal.SIGKILL)  # no-op if it already exited (and was reaped)
            return True
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(POLL_INTERVAL)
    proc.send_signal(signal.SIGKILL)
    return False


def kill_after(proc: subprocess.Popen[bytes], delay: float) -> None:
    """SIGKILL ``proc`` ``delay`` seconds after it started, unless it ended before."""
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)


def describe(trial: Trial) -> str:
    if trial.delay is not None:
        how = f"delay {trial.delay:.3f}s"
    else:
        how = f"target {trial.mode} ({'hit' if trial.hit else 'missed'})"
    return f"  #{trial.number:02d} {how:30} -> {trial.point} {trial.detail}".rstrip()


def schedule(rng: random.Random) -> list[Trial]:
    """Return the trials: RANDOM_TRIALS random kill points and each target, in a seeded order."""
    modes = ["random"] * RANDOM_TRIALS + [t for t in TARGETS for _ in range(TARGETED_REPEATS)]
    modes += [t for t in INJECTED for _ in range(INJECTED_REPEATS)]
    rng.shuffle(modes)
    trials = []
    for number, mode in enumerate(modes, start=1):
        fraction = rng.uniform(0.0, 1.0) if mode == "random" else None
        trials.append(Trial(number, mode, fraction))
    return trials


def test_kill_minus_nine_during_rotate_never_breaks_a_repository(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The acceptance test: see the module docstring; ``fleet`` has 3 nodes."""
    started = time.monotonic()
    config = fleet_config(fleet, tmp_path / "ctl", repository=REPOSITORY_CONFIG)
    result = run(config, "init")
    assert result.returncode == 0, result.stdout + result.stderr
    controller = Controller(config, fleet)

    durations = []
    for _ in range(MEASURED_ROTATIONS):  # the longest uninterrupted rotate bounds the delays
        t0 = time.monotonic()
        result = run(config, "rotate")
        durations.append(time.monotonic() - t0)
        assert result.returncode == 0, result.stdout + result.stderr
    duration = max(durations)

    # Random delays are fractions of `uncut`, the duration of an uninterrupted rotate: first
    # the longest measured, then that of each random trial the kill did not cut. Measured once,
    # it goes stale when the load drops (one measured in a load spike was 3x the later rotates,
    # and most delays then came after the rotate had ended: 6 random kills of 24). It only
    # shrinks, so under a rising load the kills land earlier in the rotate, which the
    # targeted trials make up for: they hit the local rotation and the push whatever the load.
    uncut = duration
    rng = random.Random(SEED)
    trials = schedule(rng)
    retries = MAX_RETRIES
    command = [*keysyncd_command(), "-c", str(config), "rotate"]
    print(f"\nuninterrupted rotate: {', '.join(f'{d:.3f}s' for d in durations)}; "
          f"{len(trials)} trials, seed {SEED}")  # fmt: skip
    for trial in trials:  # grows only by MAX_RETRIES re-runs of missed targets
        controller.snapshot()
        argv = command
        if trial.mode in INJECTED:
            name = "0" if trial.mode.endswith("-0") else str(controller.new_primary)
            target = str(controller.local / name)
            argv = [sys.executable, "-c", INJECTOR, "rename", target, *command[-3:]]
        began = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if trial.fraction is not None:
                trial.delay = trial.fraction * uncut
                kill_after(proc, trial.delay)
            elif trial.mode not in INJECTED:
                trial.hit = kill_when(proc, controller.trigger(trial.mode))
            code = proc.wait(timeout=COMMAND_TIMEOUT)
            if trial.mode in INJECTED:
                trial.hit = code == -signal.SIGKILL
        finally:
            if proc.poll() is None:  # only the PID this test started
                proc.kill()
                proc.wait(timeout=COMMAND_TIMEOUT)
        assert code in (0, -signal.SIGKILL), f"trial {trial.number}: rotate exited {code}"
        trial.killed = code == -signal.SIGKILL
        if trial.fraction is not None and not trial.killed:
            uncut = time.monotonic() - began  # a whole rotate at the load of the moment
        trial.point, trial.detail = (
            controller.classify() if trial.killed else ("not killed (rotate finished)", "")
        )
        where = f"trial {trial.number} ({trial.mode}, {trial.point}, {trial.detail})"
        print(describe(trial))
        if trial.hit is False and retries > 0:  # e.g. the event came and went between polls
            retries -= 1
            trials.append(Trial(len(trials) + 1, trial.mode))

        # Rule 4: everything valid right after the kill, before any repair.
        for name, directory in controller.holders().items():
            assert_loadable(f"{where}: {name}", directory)
        load_state(controller.journal.parents[1], REPOSITORY)  # the journal still parses
        try:
            controller.assert_between_generations()
            assert_primaries_shared(controller.holders())
        except AssertionError as error:
            raise AssertionError(f"{where}: {error}") from None

        # The next run converges everything (and finds no stale lock).
        for action in ("sync", "verify"):
            result = run(config, action)
            assert result.returncode == 0, f"{where}: {action}: {result.stdout}{result.stderr}"
        try:
            controller.assert_converged()
        except AssertionError as error:
            raise AssertionError(f"{where}: {error}") from None

    elapsed = time.monotonic() - started
    points = Counter(trial.point for trial in trials)
    details = Counter(f"{t.point}: {t.detail}" for t in trials if t.point == "local rotation")
    killed = sum(trial.killed for trial in trials)
    print(f"crash test: {len(trials)} trials, {killed} killed by SIGKILL, seed {SEED}, "
          f"uncut rotate {duration:.2f}s then {uncut:.2f}s, total {elapsed:.1f}s")  # fmt: skip
    print("kill points:")
    for point, count in points.most_common():
        print(f"  {count:3d}  {point}")
    for detail, count in details.most_common():
        print(f"       {count:3d}  {detail}")
    state_dir = controller.journal.parents[1]
    debris = [p.name for d in (state_dir / "repositories", tmp_path / "ctl" / "reports")
              for p in sorted(d.glob(f"{TEMP_PREFIX}*"))]  # fmt: skip
    print(f"temp files left in state_dir/report_dir (not keys; nothing removes them): {debris}")
    targeted = [t for t in trials if t.hit is not None]
    print(f"targeted kills: {sum(bool(t.hit) for t in targeted)}/{len(targeted)} hit their event")

    push = points["push phase 1"] + points["push phase 2"]
    assert len(trials) >= 24 and killed >= 20, (len(trials), killed)
    assert points["local rotation"] >= 2, points
    assert all(t.hit for t in trials if t.mode in INJECTED), "an injected crash did not happen"
    assert push >= 2, points


def test_kill_between_report_and_chain_head(fleet: Fleet, tmp_path: Path) -> None:
    """A kill -9 between writing a report and the chain head must not break the chain.

    ``reportstore.write_report`` writes the report, then ``state_dir/reports-head.json``;
    killed in between, the next writer must adopt the orphaned report as the head instead
    of raising a false tamper alarm forever.
    """
    config = fleet_config(fleet, tmp_path / "ctl", repository=REPOSITORY_CONFIG)
    assert run(config, "init").returncode == 0
    pattern = f"{config.parent / 'reports'}/*.json"
    argv = [sys.executable, "-c", INJECTOR, "replace", pattern, "-c", str(config), "rotate"]
    killed = subprocess.run(argv, capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
    assert killed.returncode == -signal.SIGKILL, "the rotate report was not written by os.replace"
    for action in ("sync", "verify"):
        result = run(config, action)
        assert result.returncode == 0, f"{action}: {result.stdout}{result.stderr}"
    result = run(config, "report", "verify-chain")
    assert result.returncode == 0, f"chain broken by the kill: {result.stdout.strip()}"
