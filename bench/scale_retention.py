"""Issue 11 item 2's proof: what keysyncd does per action must not grow with the reports it
retains. On one fleet, rotate, sync, verify, status and a metrics scrape of the running
daemon are measured with no retained report, then again after 1,000 synthetic reports of a
large fleet were added to the report directory (``report list`` is shown too: listing the
reports is the one command whose output grows with them)."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from scale_fleet import BenchFleet, bench_fleet
from scale_measure import Sample, process_cpu, run_command
from scale_reports import seed_reports

COMMANDS = ("rotate", "sync", "verify", "status", "report list")
SCRAPES = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _vm(pid: int, field: str) -> float:
    """Return /proc/PID/status ``field`` (VmRSS, VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _scrape(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - 127.0.0.1 only
        response.read()
    return time.perf_counter() - started


def scrape_daemon(bench: BenchFleet, env: dict[str, str]) -> dict[str, float]:
    """Start ``keysyncd run`` serving metrics, wait until it is idle, scrape it SCRAPES times;
    return the median scrape time and the daemon's RSS."""
    document = yaml.safe_load(bench.config.read_text())
    port = _free_port()
    document["metrics"] = {"listen": f"127.0.0.1:{port}"}
    document["drift"] = {"watch_local": False, "verify_interval": 86400}
    document["repositories"][0]["schedule"] = "0 0 1 1 *"  # not during the bench
    daemon_config = bench.config.with_name("daemon.yaml")
    daemon_config.write_text(yaml.safe_dump(document, sort_keys=False))
    argv = [*bench.command("run")]
    argv[argv.index(str(bench.config))] = str(daemon_config)
    log = bench.root / "daemon.log"
    with open(log, "wb") as output:
        daemon = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
            env=env,
        )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 120
        while True:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not serve metrics: {log.read_text()[-1500:]}")
            try:
                _scrape(url)
                break
            except OSError:
                time.sleep(0.2)
        _wait_idle(daemon.pid)
        times = [_scrape(url) for _ in range(SCRAPES)]
        return {
            "scrape_s": statistics.median(times),
            "rss_mib": _vm(daemon.pid, "VmRSS"),
            "peak_rss_mib": _vm(daemon.pid, "VmHWM"),
        }
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait(10)


def _wait_idle(pid: int, quiet: float = 1.0, limit: float = 120.0) -> None:
    """Return once ``pid`` used no CPU for ``quiet`` seconds (start-up work done)."""
    deadline = time.monotonic() + limit
    last = process_cpu([pid])
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = process_cpu([pid])
        if now == last:
            return
        last = now


def measure_commands(bench: BenchFleet, env: dict[str, str]) -> dict[str, Sample]:
    """Return a Sample of each command in COMMANDS on ``bench`` (sync after a rotation the
    nodes have not received)."""
    samples: dict[str, Sample] = {}
    before = bench.snapshot()
    samples["rotate"] = run_command(bench.command("rotate"), bench.sshd_pids, env)
    bench.restore(before)
    for name in COMMANDS[1:]:
        argv = bench.command(*name.split(), *(["--json"] if name == "status" else []))
        # status exits 1 when something needs attention: that is an answer, not a failure
        ok = (0, 1) if name == "status" else (0,)
        samples[name] = run_command(argv, bench.sshd_pids, env, ok)
    return samples


def run_retention(
    root: Path,
    nodes: int,
    retained: int,
    report_nodes: int,
    concurrency: int | None,
    env: dict[str, str],
) -> dict[str, Any]:
    """Measure every command and a metrics scrape with 0, then ``retained`` reports of a
    ``report_nodes``-node fleet; return both sets of figures."""
    result: dict[str, Any] = {"nodes": nodes, "retained": retained, "report_nodes": report_nodes}
    with bench_fleet(root / "retention", nodes, concurrency, keep=retained + 10_000) as bench:
        run_command(bench.command("verify"), bench.sshd_pids, env)  # warm-up
        for label in ("0", str(retained)):
            if label != "0":
                size = seed_reports(bench.report_dir, retained, report_nodes)
                result["seeded_mib"] = round(size / 2**20, 1)
            reports = len(list(bench.report_dir.glob("*.json")))
            samples = measure_commands(bench, env)
            scrape = scrape_daemon(bench, env)
            result[label] = {
                "reports_on_disk": reports,
                "commands": {name: sample.to_json() for name, sample in samples.items()},
                "metrics": scrape,
            }
            print(
                f"  retention: {reports} reports: "
                + ", ".join(
                    f"{name} {s.wall:.2f}s {s.peak_rss_mib:.0f}MiB" for name, s in samples.items()
                )
                + f", scrape {scrape['scrape_s'] * 1000:.1f}ms",
                flush=True,
            )
    return result
