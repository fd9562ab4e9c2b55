"""Where a ``keysyncd sync`` spends its CPU: py-spy samples the real command (every thread,
only while it holds the GIL: Python CPU, not waits), and the samples are summed per
function, by self time and by time including callees.

A sampling profiler barely slows the program down (deterministic profilers such as cProfile
multiply paramiko's per-packet costs several times over, which distorts the shares).
py-spy is in the ``bench`` extra: ``pip install -e .[bench]``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

TOP = 30


def py_spy() -> str | None:
    """Return the py-spy executable beside this Python's, or on PATH; None if absent."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(argv: Sequence[str], raw: Path, env: dict[str, str], rate: int = 250) -> None:
    """Run ``argv`` under py-spy, writing collapsed stacks to ``raw``; raise RuntimeError if
    the command or py-spy fails."""
    spy = py_spy()
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install -e .[bench])")
    command = [spy, "record", "--gil", "--nonblocking", "--rate", str(rate), "--format", "raw"]
    command += ["--output", str(raw), "--", *argv]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"py-spy failed ({result.returncode}): {result.stderr[-1500:]}")


def _function(frame: str) -> str:
    """Return ``function (file)`` for a py-spy frame ``function (file:line)``."""
    return re.sub(r":\d+\)$", ")", frame)


def summarise(raw: Path, top: int = TOP) -> str:
    """Return a text summary of py-spy's collapsed stacks in ``raw``: the functions with the
    largest share of samples, by self time and including callees."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples, frames = int(count), [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
        layers[_layer(frames)] += samples
    if not total:
        return "no samples\n"
    lines = [
        f"{total} samples of threads holding the GIL",
        "",
        "by layer (innermost keysyncd frame's module, else the library):",
    ]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in layers.most_common(15)]
    lines += ["", "self:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines += ["", "including callees:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def _layer(frames: list[str]) -> str:
    """Return where a sample is charged: the innermost keysyncd module on the stack and the
    library below it (``keysyncd/io/remote/sftp.py > paramiko``)."""
    library = "python"
    for frame in reversed(frames):
        match = re.search(r"\((keysyncd/[^)]+)\)$", frame)
        if match:
            return f"{match.group(1)} > {library}"
        lib = re.search(r"\((paramiko|cryptography|nacl)/", frame)
        if lib and library == "python":
            library = lib.group(1)
    return f"(no keysyncd frame) > {library}"


PHASES = (
    ("keysyncd.actions.distribute", None, "load_local"),
    ("keysyncd.io.remote.fanout", "Fanout", "open"),
    ("keysyncd.io.remote.fleet", "FleetAction", "inspect"),
    ("keysyncd.io.remote.fleet", "FleetAction", "push"),
    ("keysyncd.io.remote.fleet", "FleetAction", "verify"),
    ("keysyncd.io.remote.fanout", "Fanout", "finish"),
    ("keysyncd.actions.distribute", None, "commit"),
)
WIRE = (
    ("paramiko.packet", "Packetizer", "send_message", "SSH packets sent"),
    ("paramiko.packet", "Packetizer", "read_message", "SSH packets received"),
    ("paramiko.sftp_client", "SFTPClient", "_async_request", "SFTP requests"),
)


@contextlib.contextmanager
def _wrapped(targets: list[tuple[object, str, Callable[[Any], Any]]]) -> Iterator[None]:
    """Replace each ``owner.name`` by ``wrap(original)`` for the duration."""
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]
    try:
        for (owner, name, wrap), (_, _, original) in zip(targets, originals, strict=True):
            setattr(owner, name, wrap(original))
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _owner(module: str, cls: str | None, name: str) -> object | None:
    """Return the module or class holding ``name``, None if this keysyncd has no such thing
    (the code moves; the breakdown shows what it finds)."""
    try:
        owner: object = importlib.import_module(module)
        if cls is not None:
            owner = getattr(owner, cls)
    except (ImportError, AttributeError):
        return None
    return owner if hasattr(owner, name) else None


def phase_breakdown(nodes: int, run_sync: Callable[[], str]) -> str:
    """Return where one in-process sync spends keysyncd's CPU, step by step (process CPU
    of every thread while the step runs; steps run one after another), and how many SSH
    packets and SFTP requests it needs per node."""
    cpu: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    counts: collections.Counter[str] = collections.Counter()

    def timed(label: str) -> Callable[[Any], Any]:
        def wrap(original: Any) -> Any:
            @functools.wraps(original)
            def step(*args: Any, **kwargs: Any) -> Any:
                started, wall = time.process_time(), time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    cpu[label][0] += time.process_time() - started
                    cpu[label][1] += time.perf_counter() - wall

            return step

        return wrap

    def counted(label: str) -> Callable[[Any], Any]:
        def wrap(original: Any) -> Any:
            @functools.wraps(original)
            def call(*args: Any, **kwargs: Any) -> Any:
                counts[label] += 1
                return original(*args, **kwargs)

            return call

        return wrap

    targets: list[tuple[object, str, Callable[[Any], Any]]] = []
    for module, cls, name in PHASES:
        if (owner := _owner(module, cls, name)) is not None:
            targets.append((owner, name, timed(f"{cls or module.rsplit('.', 1)[1]}.{name}")))
    for module, cls, name, label in WIRE:
        if (owner := _owner(module, cls, name)) is not None:
            targets.append((owner, name, counted(label)))
    with _wrapped(targets):
        started, wall = time.process_time(), time.perf_counter()
        outcome = run_sync()
        total, wall = time.process_time() - started, time.perf_counter() - wall
    per_node = total / nodes * 1000
    lines = [f"in-process sync of {nodes} nodes ({outcome}): keysyncd CPU {per_node:.2f} ms/node, "
             f"wall {wall:.2f} s", ""]  # fmt: skip
    lines += [f"  {label:28} CPU {c / nodes * 1000:6.2f} ms/node   wall {w:6.2f} s"
              for label, (c, w) in cpu.items()]  # fmt: skip
    lines += [""] + [f"  {label:28} {n / nodes:6.1f} per node" for label, n in counts.items()]
    return "\n".join(lines) + "\n"
