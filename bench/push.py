"""Benchmark: keysyncd's push against kolla-ansible's method, measured in the same run.

For each fleet size N it starts N real sshd nodes on 127.0.0.1 and measures, median
of --repeat runs:

* baseline: a sequential ``rsync -az --delete -e ssh`` loop over the nodes (what
  kolla-ansible's fernet-push.sh does), pushing 3 key files to empty node directories;
* keysyncd sync: the same 3 files to empty node directories, including connect,
  read, two-phase apply and read-back verification of every node;
* keysyncd rotate: promotion gate (verify every node), local rotation, push, verify.

It prints the times and the ratio baseline / keysyncd. Usage:

    .venv/bin/python bench/push.py --nodes 10 50 --repeat 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from keysyncd.actions.context import Run
from keysyncd.actions.distribute import rotate_repository, sync_repository
from keysyncd.commands.cli import main
from keysyncd.config import load_config
from keysyncd.core.vocabulary import Trigger
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet


def clear(fleet: Fleet) -> None:
    """Empty every node directory so each run pushes everything again."""
    for node in fleet.nodes:
        for entry in node.directory.iterdir():
            entry.unlink()


def median_of(repeat: int, prepare, measure) -> float:  # type: ignore[no-untyped-def]
    """Return the median time of ``measure()`` over ``repeat`` runs, each after ``prepare()``."""
    times = []
    for _ in range(repeat):
        prepare()
        started = time.perf_counter()
        measure()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench(count: int, repeat: int, root: Path) -> dict[str, float]:
    """Return the median timings for a fleet of ``count`` nodes."""
    with Fleet(root / f"fleet{count}", count, sftp_only=False, start_timeout=60) as fleet:
        config_path = fleet_config(fleet, root / f"ctl{count}")
        config_path.write_text(
            config_path.read_text().replace("concurrency: 16", "concurrency: 32")
        )
        assert main(["-c", str(config_path), "init"]) == 0
        assert main(["-c", str(config_path), "rotate"]) == 0  # 3 key files, like the baseline
        config = load_config(config_path)
        repository = config.repositories[0]

        def rsync_loop() -> None:
            for node in fleet.nodes:
                command = fleet.rsync_command(node, repository.path)
                subprocess.run(command, check=True, capture_output=True)

        def keysyncd_sync() -> None:
            result = sync_repository(Run(config, repository, Trigger.CLI))
            assert result.outcome == "ok", result.outcome

        def keysyncd_rotate() -> None:
            result = rotate_repository(Run(config, repository, Trigger.CLI))
            assert result.outcome == "ok", result.messages

        return {
            "rsync": median_of(repeat, lambda: clear(fleet), rsync_loop),
            "sync": median_of(repeat, lambda: clear(fleet), keysyncd_sync),
            "rotate": median_of(repeat, lambda: None, keysyncd_rotate),
        }


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="keysyncd-bench-"))
    try:
        print(f"{'nodes':>5}  {'rsync loop':>10}  {'keysyncd sync':>13}  {'ratio':>6}  "
              f"{'keysyncd rotate':>15}  {'ratio':>6}")  # fmt: skip
        for count in args.nodes:
            t = bench(count, args.repeat, root)
            print(f"{count:>5}  {t['rsync']:>9.2f}s  {t['sync']:>12.2f}s  "
                  f"{t['rsync'] / t['sync']:>5.1f}x  {t['rotate']:>14.2f}s  "
                  f"{t['rsync'] / t['rotate']:>5.1f}x", flush=True)  # fmt: skip
        print("ratio = rsync loop time / keysyncd time (higher is better for keysyncd); "
              "keysyncd times include read-back verification of every node")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    main_bench()
