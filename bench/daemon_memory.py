"""Benchmark: does the daemon leak? RSS of a real ``keysyncd run`` over hundreds of rotations.

It starts a real OpenSSH fleet on 127.0.0.1 (``--nodes``, 3) and the daemon (``python -m
keysyncd -c CONFIG run``) rotating on a 1-second schedule (``* * * * * *``). With
``--retained N`` the report directory first gets N synthetic reports of a
``--report-nodes``-node fleet (1,000), kept by the retention for the whole run: the daemon
must not hold them in memory. Keys are retired one
second after their demotion (token_expiration 1, allow_expired_window 0), so the repository
stays at max_active_keys files and every cycle does the same work. Completed rotation
cycles are counted from the reports; at every ``--checkpoint`` cycles it prints the
daemon's VmRSS (from /proc/PID/status), thread count and open file descriptors, and at the
end the RSS at the last checkpoint divided by the RSS at the first. Usage (500 cycles take
about 9 minutes):

    .venv/bin/python bench/daemon_memory.py --cycles 500 --checkpoint 50
    .venv/bin/python bench/daemon_memory.py --cycles 100 --checkpoint 25 --nodes 10 \
        --retained 1000 --report-nodes 1000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scale_reports import seed_reports

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet

SECONDS_PER_CYCLE_BOUND = 5.0  # give up if the daemon is this far behind a 1 s schedule


def proc_status(pid: int) -> dict[str, str]:
    """Return /proc/PID/status as a dict (e.g. ``{"VmRSS": "41234 kB", ...}``)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def kib(value: str) -> int:
    """Return the number of KiB in a /proc value such as ``"41234 kB"``."""
    return int(value.split()[0])


def rotations_done(report_dir: Path, since: str = "") -> int:
    """Return how many rotation reports the daemon has written (ids after ``since``)."""
    try:
        return sum("-rotate-" in name and name > since for name in os.listdir(report_dir))
    except FileNotFoundError:
        return 0


def outcomes(report_dir: Path, since: str = "") -> dict[str, int]:
    """Return {outcome: count} over every rotation report with an id after ``since``."""
    counts: dict[str, int] = {}
    for path in sorted(p for p in report_dir.glob("*-rotate-*.json") if p.name > since):
        outcome = json.loads(path.read_text())["outcome"]
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def sample(pid: int, cycle: int, started: float) -> dict[str, float]:
    """Return and print one measurement of the daemon."""
    status = proc_status(pid)
    row = {
        "cycle": cycle,
        "elapsed": time.monotonic() - started,
        "rss_kib": kib(status["VmRSS"]),
        "hwm_kib": kib(status["VmHWM"]),
        "threads": int(status["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }
    print(f"{cycle:>6} {row['elapsed']:>8.1f} {row['rss_kib'] / 1024:>9.1f} "
          f"{row['hwm_kib'] / 1024:>9.1f} {row['threads']:>7} {row['fds']:>5}",
          flush=True)  # fmt: skip
    return row


def run(
    cycles: int,
    checkpoint: int,
    root: Path,
    nodes: int = 3,
    retained: int = 0,
    report_nodes: int = 1000,
) -> list[dict[str, float]]:
    """Run the daemon for ``cycles`` rotations; return the checkpoint measurements."""
    with Fleet(root / "fleet", nodes, start_timeout=30 + nodes / 10) as fleet:
        config = fleet_config(
            fleet, root / "ctl",
            repository={"schedule": "* * * * * *", "max_active_keys": 3,
                        "token_expiration": 1, "allow_expired_window": 0},
            reports={"keep_count": retained + cycles + 1000, "keep_days": 90},
        )  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["-c", str(config), "init"]) == 0, "keysyncd init failed"
        report_dir = root / "ctl" / "reports"
        if retained:
            size = seed_reports(report_dir, retained, report_nodes)
            print(f"seeded {retained} reports of {report_nodes} nodes ({size / 2**20:.0f} MiB)")
        # the daemon's own reports come after this one (report ids sort by time; the index
        # file, index.jsonl, is no report)
        since = max(path.name for path in report_dir.glob("*.json"))
        log = root / "daemon.log"
        with open(log, "wb") as stderr:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "keysyncd", "-c", str(config), "run"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True,
            )  # fmt: skip
        print(f"daemon PID {daemon.pid}, log {log}", flush=True)
        print(f"{'cycle':>6} {'seconds':>8} {'RSS MiB':>9} {'peak MiB':>9} {'threads':>7} "
              f"{'fds':>5}", flush=True)  # fmt: skip
        rows: list[dict[str, float]] = []
        started = time.monotonic()
        deadline = started + 30 + cycles * SECONDS_PER_CYCLE_BOUND
        try:
            next_mark = checkpoint
            while next_mark <= cycles:
                if daemon.poll() is not None:
                    raise SystemExit(f"the daemon exited ({daemon.returncode}); see {log}")
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"too slow: {rotations_done(report_dir, since)} cycles; see {log}"
                    )
                done = rotations_done(report_dir, since)
                if done >= next_mark:
                    rows.append(sample(daemon.pid, done, started))
                    next_mark += checkpoint
                time.sleep(0.1)
        except SystemExit:
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(60)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait(10)
        print(f"daemon exit code {daemon.returncode}; "
              f"rotation outcomes {outcomes(report_dir, since)}")  # fmt: skip
        keys = sorted(int(p.name) for p in (root / "ctl" / "keys").iterdir() if p.name.isdigit())
        print(f"controller keys at the end: {len(keys)} files (highest index {max(keys)})")
    return rows


def main_cli() -> None:
    """Parse arguments, run, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=500, help="rotations to run (500)")
    parser.add_argument("--checkpoint", type=int, default=50, help="measure every N (50)")
    parser.add_argument("--nodes", type=int, default=3, help="real sshd nodes (3)")
    parser.add_argument("--retained", type=int, default=0, help="synthetic reports to keep (0)")
    parser.add_argument("--report-nodes", type=int, default=1000, help="nodes per report (1000)")
    args = parser.parse_args()
    if not 0 < args.checkpoint <= args.cycles:
        parser.error("need 0 < --checkpoint <= --cycles")
    with tempfile.TemporaryDirectory(prefix="keysyncd-daemon-memory-") as root:
        rows = run(
            args.cycles, args.checkpoint, Path(root), args.nodes, args.retained, args.report_nodes
        )
    first, last = rows[0], rows[-1]
    ratio = last["rss_kib"] / first["rss_kib"]
    print(f"RSS at cycle {first['cycle']:.0f}: {first['rss_kib'] / 1024:.1f} MiB; "
          f"at cycle {last['cycle']:.0f}: {last['rss_kib'] / 1024:.1f} MiB; "
          f"ratio {ratio:.3f}")  # fmt: skip


if __name__ == "__main__":
    main_cli()
