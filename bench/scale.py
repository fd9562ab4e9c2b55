"""Benchmark: keysyncd against fleet size. One command, a Markdown table, and bench/results/.

For each fleet size N (default 10 30 100 300 1000) it starts N real sshd nodes on
127.0.0.1 and measures on those same nodes, median of ``--repeat`` rounds, each round:

* ``keysyncd rotate`` as a command: the promotion gate (every node verified), the local
  rotation, the two-phase push and the read-back;
* ``keysyncd sync`` as a command (start-up included) of a freshly rotated repository: the
  nodes are first given back the keys they held before that rotation;
* ``keysyncd verify`` as a command;
* kolla-ansible's method, a sequential ``rsync -az --delete -e ssh`` loop pushing the same
  rotation (up to ``--rsync-max`` nodes; beyond, extrapolated from the largest measured
  size, and marked so), with OpenSSH's default key exchange as kolla runs it, and again
  tuned to curve25519-sha256;
* the OpenSSH floor: one ``ssh NODE true`` per node, and one ``ssh -s NODE sftp`` (an SFTP
  session that ends at once, no shell), ``ssh.concurrency`` at a time, each ssh with its
  own minimal ssh_config and one-line known_hosts (see scale_baselines).

Each command's own CPU (user + system, from wait4) and peak RSS, the CPU of the nodes' sshd
processes, and the whole machine's busy time are recorded: the nodes share the CPU with
keysyncd here, so the wall times are those of 2 x N processes on this machine.

Then, unless skipped: a py-spy profile of ``keysyncd sync`` at ``--profile-nodes``; item 2's
proof (rotate, sync, verify, status and a metrics scrape with 0 and ``--retained`` reports
of a ``--report-nodes``-node fleet, on ``--retention-nodes`` real nodes); and the daemon's RSS
after ``--daemon-cycles`` scheduled rotations with those retained reports
(bench/daemon_memory.py).

Results: bench/results/scale.md (machine, tables, targets), scale.json (every sample),
scale.png (time and CPU per node against N), profile-sync-N.txt. Usage:

    .venv/bin/pip install -e '.[bench]'     # matplotlib and py-spy
    .venv/bin/python bench/scale.py         # everything: about 30 minutes on 2 cores
    .venv/bin/python bench/scale.py --nodes 10 30 100 --repeat 3 --skip daemon retention
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import daemon_memory
from scale_baselines import rsync_loop, ssh_floor, write_ssh_configs
from scale_fleet import BenchFleet, bench_fleet
from scale_measure import describe_machine, raise_limits, run_children, run_command
from scale_output import cpu_table, main_table, plot, retention_table, summarise_size, targets
from scale_output import targets_table as targets_markdown
from scale_profile import phase_breakdown, record, summarise
from scale_retention import run_retention

from keysyncd.actions.context import Run
from keysyncd.actions.distribute import sync_repository
from keysyncd.config import load_config
from keysyncd.core.vocabulary import Trigger

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("profile", "retention", "daemon")


def command_environment(root: Path) -> dict[str, str]:
    """Return the environment of the measured commands: bytecode cached (in ``root``), as
    for an installed keysyncd, even where the developer's shell sets PYTHONDONTWRITEBYTECODE
    (compiling every module at each start would be counted as keysyncd's start-up)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


def measure_size(bench: BenchFleet, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Return every sample of one fleet size (and write its profile if asked)."""
    count, pids, env = bench.count, bench.sshd_pids, command_environment(bench.root.parent)
    concurrency = load_config(bench.config).ssh.concurrency  # the floor runs at keysyncd's
    configs = write_ssh_configs(bench.fleet, bench.root / "ssh")
    kolla = write_ssh_configs(bench.fleet, bench.root / "ssh", tuned=False)
    run_command(bench.command("verify"), pids, env)  # warm-up: bytecode, page cache
    samples: dict[str, list[dict[str, float]]] = defaultdict(list)
    for _ in range(args.repeat):
        before = bench.snapshot()
        samples["rotate"].append(run_command(bench.command("rotate"), pids, env).to_json())
        bench.restore(before)
        samples["sync"].append(run_command(bench.command("sync"), pids, env).to_json())
        samples["verify"].append(run_command(bench.command("verify"), pids, env).to_json())
        if count <= args.rsync_max:
            bench.restore(before)
            rsync = run_children(lambda: rsync_loop(bench.fleet, kolla, bench.keys), pids)
            samples["rsync"].append(rsync.to_json())
            bench.restore(before)
            rsync = run_children(lambda: rsync_loop(bench.fleet, configs, bench.keys), pids)
            samples["rsync_tuned"].append(rsync.to_json())
        floor = run_children(lambda: ssh_floor(bench.fleet, configs, concurrency), pids)
        samples["floor_true"].append(floor.to_json())
        floor = run_children(lambda: ssh_floor(bench.fleet, configs, concurrency, True), pids)
        samples["floor_sftp"].append(floor.to_json())
    if "profile" not in args.skip and count in args.profile_nodes:
        profile_sync(bench, out)
    return {"nodes": count, "concurrency": concurrency, "samples": dict(samples)}


def profile_sync(bench: BenchFleet, out: Path) -> None:
    """Write where one ``keysyncd sync`` of a fresh rotation spends its CPU to ``out``:
    py-spy's view of the command, then a step-by-step breakdown of an in-process sync."""
    env = command_environment(bench.root.parent)
    summary = out / f"profile-sync-{bench.count}.txt"
    text = [f"keysyncd sync of a fresh rotation, {bench.count} nodes\n"]
    before = bench.snapshot()
    run_command(bench.command("rotate"), bench.sshd_pids, env)
    bench.restore(before)
    raw = bench.root / "profile-sync.raw"
    try:
        # py-spy reads every thread's stack at each sample: slower sampling for many threads
        record(bench.command("sync"), raw, env, rate=250 if bench.count <= 100 else 50)
        text += ["## py-spy (--gil): the `keysyncd sync` command\n", summarise(raw)]
    except RuntimeError as error:
        text += [f"py-spy: {error}\n"]
    config = load_config(bench.config)
    repository = config.repositories[0]

    def sync() -> str:
        return sync_repository(Run(config, repository, Trigger.CLI)).outcome

    before = bench.snapshot()
    run_command(bench.command("rotate"), bench.sshd_pids, env)
    bench.restore(before)
    text += ["## step by step (the same sync, in-process)\n", phase_breakdown(bench.count, sync)]
    summary.write_text("\n".join(text))
    print(f"  profile: {summary}", flush=True)


def progress_line(size: dict[str, Any]) -> str:
    """Return one line summing up a fleet size as it finishes."""
    median = size["median"]
    parts = [f"{size['nodes']:>5} nodes:"]
    for name in ("sync", "verify", "rotate", "rsync", "rsync_tuned", "floor_true", "floor_sftp"):
        if name in median:
            parts.append(f"{name} {median[name]['wall']:.2f}s")
    parts.append(f"keysyncd {median['sync']['cpu_ms_per_node']:.1f} ms/node")
    parts.append(f"sshd {median['sync']['sshd_ms_per_node']:.1f} ms/node")
    parts.append(f"peak {size['peak_rss_mib']:.0f} MiB")
    return "  ".join(parts)


def run_daemon(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Return the daemon's RSS after ``--daemon-cycles`` rotations with retained reports."""
    checkpoint = max(1, args.daemon_cycles // 4)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        rows = daemon_memory.run(
            args.daemon_cycles,
            checkpoint,
            root / "daemon",
            args.daemon_nodes,
            args.retained,
            args.report_nodes,
        )
    last, first = rows[-1], rows[0]
    return {
        "cycles": int(last["cycle"]),
        "nodes": args.daemon_nodes,
        "retained": args.retained,
        "report_nodes": args.report_nodes,
        "rss_mib": last["rss_kib"] / 1024,
        "first_rss_mib": first["rss_kib"] / 1024,
        "peak_rss_mib": last["hwm_kib"] / 1024,
        "log": printed.getvalue(),
    }


def write_results(results: dict[str, Any], out: Path) -> str:
    """Write scale.md, scale.json and scale.png to ``out``; return the Markdown."""
    machine = results["machine"]
    lines = [
        f"# keysyncd at scale ({results['date']})",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"{machine['os']} (kernel {machine['kernel']}); Python {machine['python']}, paramiko "
        f"{machine['paramiko']}, {machine['openssh']}, {machine['rsync']}. Load average at the "
        f"start: {', '.join(f'{x:.2f}' for x in machine['load_average'])}. The N sshd nodes run "
        "on this machine and share its cores with keysyncd.",
        "",
        f"Command: `{results['command']}`. Medians of {results['repeat']} rounds; ssh.concurrency "
        f"{results['concurrency']}; {results['minutes']:.0f} minutes in all.",
        "",
        main_table(results["sizes"]),
        cpu_table(results["sizes"]),
        "Per node CPU = the command's user + system time (start-up included) / N; the sshd "
        "side = every node's sshd and the session processes it reaped; the rest of the "
        "machine = all cores' busy time during the command minus keysyncd's (other users of "
        "this machine included).",
        "",
        "## Targets (issue 11)",
        "",
        targets_markdown(results),
    ]
    if "retention" in results:
        lines += ["## Retained reports (item 2)", "", retention_table(results["retention"])]
    if "daemon" in results:
        daemon = results["daemon"]
        lines += [
            "## Daemon memory",
            "",
            f"`keysyncd run` rotating every second on {daemon['nodes']} nodes, with "
            f"{daemon['retained']} retained reports of a {daemon['report_nodes']}-node fleet: "
            f"RSS {daemon['first_rss_mib']:.1f} MiB at the first checkpoint, "
            f"{daemon['rss_mib']:.1f} MiB after {daemon['cycles']} cycles, peak "
            f"{daemon['peak_rss_mib']:.1f} MiB.",
            "",
        ]
    profiles = sorted(out.glob("profile-sync-*.txt"))
    if profiles:
        lines += ["## Profiles", ""] + [f"- [{p.name}]({p.name})" for p in profiles] + [""]
    markdown = "\n".join(lines)
    (out / "scale.md").write_text(markdown)
    (out / "scale.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    plot(results, out / "scale.png")
    return markdown


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 30, 100, 300, 1000])
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size (median)")
    parser.add_argument("--concurrency", type=int, help="ssh.concurrency (keysyncd's default)")
    parser.add_argument("--rsync-max", type=int, default=100, help="largest rsync loop (100)")
    parser.add_argument("--profile-nodes", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--retention-nodes", type=int, default=500)
    parser.add_argument("--retained", type=int, default=1000, help="synthetic reports (1000)")
    parser.add_argument("--report-nodes", type=int, default=1000, help="nodes per report")
    parser.add_argument("--daemon-cycles", type=int, default=100)
    parser.add_argument("--daemon-nodes", type=int, default=10, help="real nodes (10)")
    parser.add_argument("--skip", nargs="*", default=[], choices=SECTIONS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_limits()
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob("profile-sync-*"):
        stale.unlink()
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["bench/scale.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": describe_machine(),
        "repeat": args.repeat,
        "concurrency": args.concurrency or "keysyncd's default",
        "sizes": [],
    }
    root = Path(tempfile.mkdtemp(prefix="keysyncd-scale-"))
    os.environ.clear()
    os.environ.update(command_environment(root))  # also for the daemon bench's processes
    try:
        for count in args.nodes:
            with bench_fleet(root / f"n{count}", count, args.concurrency) as bench:
                size = measure_size(bench, args, args.out)
            size.update(summarise_size(count, size["samples"]))
            results["concurrency"] = size["concurrency"]
            results["sizes"].append(size)
            print(progress_line(size), flush=True)
        if "retention" not in args.skip:
            results["retention"] = run_retention(
                root,
                args.retention_nodes,
                args.retained,
                args.report_nodes,
                args.concurrency,
                command_environment(root),
            )
        if "daemon" not in args.skip:
            results["daemon"] = run_daemon(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        results["minutes"] = (time.monotonic() - started) / 60
        if results["sizes"]:
            print("\n" + write_results(results, args.out))
            print(f"written: {args.out}/scale.md, scale.json, scale.png")
    return 0 if all(v != "**NOT met**" for _, _, v in targets(results)) else 1


if __name__ == "__main__":
    sys.exit(main())
