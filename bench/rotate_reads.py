"""Benchmark: what one rotation costs each node, for each key kind, measured in the same run
for the two paths:

* now: a node's view, once read, is kept while nothing is written there; a node in sync
  before the gate is read once (that read is its verification), and the promotion's push
  plans from the view verified before the gate, then reads the node back once;
* before: every inspect and every verify reads every node anew
  (``Fanout.keep_views = False``: the requests the code sent before views were kept).

On N real sshd nodes (127.0.0.1) per kind (fernet, credential with an ``after_rotate``
hook, jws), after ``init``, it rotates --rotations times per path (every node in sync
before each rotation) and prints, per node and rotation: full reads of the node's
repository view, SFTP round trips (a pipelined batch is one; the SFTP session's start and
the clock probe included, the SSH handshake not), and keysyncd's CPU time
(``time.process_time``: this process, every thread; the nodes' sshd are other processes),
with the ratio before / now. Figures, not assertions: they vary with the machine.

Measured when this bench was written (3 nodes, in sync), per node and rotation, before ->
now: reads fernet 4 -> 2, credential 4 -> 2, jws 3 -> 3 (every node gets new public keys,
then its private key: each write phase is read back); round trips 30 -> 20, 30 -> 20,
54 -> 54; CPU 15-18% less for fernet and credential (20 nodes: 12.5 -> 10.8 ms). Usage:

    .venv/bin/python bench/rotate_reads.py --nodes 3 --rotations 5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from keysyncd.commands.cli import main
from keysyncd.io.remote.fanout import Fanout
from keysyncd.io.remote.sftpmeter import metered
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet

KINDS = ("fernet", "credential", "jws")


def repository_of(kind: str) -> dict[str, Any]:
    """Return the repository fields of a ``kind`` repository whose keys retire one second
    after demotion (so each rotation finds about the same files)."""
    fields: dict[str, Any] = {
        "name": kind,
        "kind": kind,
        "token_expiration": 1,
        "allow_expired_window": 0,
    }
    if kind == "credential":  # its keys retire on a migration only: a no-op one
        fields["hooks"] = {"after_rotate": [[shutil.which("true") or "/bin/true"]]}
    return fields


def configure(fleet: Fleet, root: Path, kind: str) -> Path:
    """Write the config of one ``kind`` repository on ``fleet``; return its path."""
    path = fleet_config(fleet, root, repository_of(kind))
    document = yaml.safe_load(path.read_text())
    if kind != "fernet":  # keystone's fixed count (credential); none for jws
        document["repositories"][0].pop("max_active_keys")
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def keysyncd(config: Path, *args: str) -> None:
    """Run one keysyncd command, quietly; raise if it does not succeed."""
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["-c", str(config), *args])
    if code != 0:
        raise RuntimeError(f"keysyncd {' '.join(args)} exited {code}")


def measure(config: Path, rotations: int, nodes: int, keep: bool) -> dict[str, float]:
    """Return reads, round trips and CPU ms per node per rotation, for one path."""
    Fanout.keep_views = keep
    try:
        with metered() as seen:
            cpu = time.process_time()
            for _ in range(rotations):
                time.sleep(1.1)  # the demoted keys of the last rotation may retire now
                keysyncd(config, "rotate")
            cpu = time.process_time() - cpu
    finally:
        Fanout.keep_views = True
    per = rotations * nodes
    return {
        "reads": sum(t.reads for t in seen.values()) / per,
        "round_trips": sum(t.round_trips for t in seen.values()) / per,
        "cpu_ms": 1000 * cpu / per,
    }


def bench(kind: str, count: int, rotations: int, root: Path) -> dict[str, dict[str, float]]:
    """Return the figures of both paths for a ``kind`` repository on ``count`` nodes."""
    with Fleet(root / f"fleet-{kind}", count, start_timeout=60) as fleet:
        config = configure(fleet, root / f"ctl-{kind}", kind)
        keysyncd(config, "init")
        keysyncd(config, "rotate")  # the steady state: a primary, a secondary, a staged key
        return {
            "before": measure(config, rotations, count, keep=False),
            "now": measure(config, rotations, count, keep=True),
        }


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rotations", type=int, default=5)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="keysyncd-bench-"))
    try:
        print(f"{args.nodes} nodes, {args.rotations} rotations per path; per node and rotation:")
        print(f"{'kind':<11} {'path':<7} {'reads':>6} {'round trips':>12} {'CPU ms':>8}")
        for kind in args.kinds:
            figures = bench(kind, args.nodes, args.rotations, root)
            for path in ("before", "now"):
                f = figures[path]
                print(f"{kind:<11} {path:<7} {f['reads']:>6.2f} {f['round_trips']:>12.1f} "
                      f"{f['cpu_ms']:>8.1f}")  # fmt: skip
            old, new = figures["before"], figures["now"]
            print(f"{kind:<11} {'ratio':<7} {old['reads'] / new['reads']:>5.2f}x "
                  f"{old['round_trips'] / new['round_trips']:>11.2f}x "
                  f"{old['cpu_ms'] / new['cpu_ms']:>7.2f}x", flush=True)  # fmt: skip
        print("ratio = before / now (higher: the path that keeps views costs less)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    main_bench()
