"""The scale bench's results: Markdown tables, the targets of issue 11 checked against the
figures, and a plot of time and CPU per node against the fleet size."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MB = 1e6 / 2**20  # MiB in one MB: targets are in MB, figures in MiB
COMMANDS = ("sync", "verify", "rotate")


def median_of(samples: Sequence[dict[str, float]]) -> dict[str, float]:
    """Return the median of every field over ``samples`` (dicts of Sample.to_json())."""
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def summarise_size(count: int, samples: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Return the medians of one fleet size, per node figures included."""
    medians = {name: median_of(runs) for name, runs in samples.items() if runs}
    for median in medians.values():
        median["cpu_ms_per_node"] = median["cpu"] / count * 1000
        median["sshd_ms_per_node"] = median["sshd_cpu"] / count * 1000
        median["rest_ms_per_node"] = max(median["machine_cpu"] - median["cpu"], 0) / count * 1000
    peak = max((s["peak_rss_mib"] for n in COMMANDS for s in samples.get(n, [])), default=0.0)
    return {"nodes": count, "median": medians, "peak_rss_mib": peak}


def rsync_time(
    sizes: list[dict[str, Any]], count: int, name: str = "rsync"
) -> tuple[float | None, bool]:
    """Return (rsync loop ``name`` seconds at ``count`` nodes, extrapolated?): measured if it
    was, else the per-node time of the largest measured size times ``count``."""
    by_count = {s["nodes"]: s for s in sizes}
    if name in by_count[count]["median"]:
        return by_count[count]["median"][name]["wall"], False
    measured = [s for s in sizes if name in s["median"]]
    if not measured:
        return None, True
    largest = max(measured, key=lambda s: s["nodes"])
    return largest["median"][name]["wall"] / largest["nodes"] * count, True


def _seconds(value: float | None, extrapolated: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" + (" (extrapolated)" if extrapolated else "")


def main_table(sizes: list[dict[str, Any]]) -> str:
    """Return the Markdown table of times per fleet size."""
    rows = [
        "| nodes | `keysyncd sync` | `keysyncd verify` | `keysyncd rotate` | rsync loop "
        "(kolla) | rsync loop, curve25519 | floor: `ssh true` | floor: `ssh -s sftp` | "
        "rsync / sync | rsync curve25519 / sync | sync / `ssh true` floor | "
        "sync / `sftp` floor |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        median, count = size["median"], size["nodes"]
        sync = median["sync"]["wall"]
        rsync, extrapolated = rsync_time(sizes, count)
        tuned, tuned_extrapolated = rsync_time(sizes, count, "rsync_tuned")
        floor_true = median.get("floor_true", {}).get("wall")
        floor_sftp = median.get("floor_sftp", {}).get("wall")
        cells = [
            str(count),
            _seconds(sync),
            _seconds(median["verify"]["wall"]),
            _seconds(median["rotate"]["wall"]),
            _seconds(rsync, extrapolated),
            _seconds(tuned, tuned_extrapolated),
            _seconds(floor_true),
            _seconds(floor_sftp),
            f"{rsync / sync:.1f}x" if rsync else "-",
            f"{tuned / sync:.1f}x" if tuned else "-",
            f"{sync / floor_true:.2f}" if floor_true else "-",
            f"{sync / floor_sftp:.2f}" if floor_sftp else "-",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def cpu_table(sizes: list[dict[str, Any]]) -> str:
    """Return the Markdown table of CPU per node and peak memory per fleet size."""
    rows = [
        "| nodes | keysyncd CPU/node: sync | verify | rotate | sshd side CPU/node: sync | "
        "rest of the machine/node: sync | controller peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        median = size["median"]
        cells = [str(size["nodes"])]
        cells += [f"{median[name]['cpu_ms_per_node']:.1f} ms" for name in COMMANDS]
        cells += [
            f"{median['sync']['sshd_ms_per_node']:.1f} ms",
            f"{median['sync']['rest_ms_per_node']:.1f} ms",
            f"{size['peak_rss_mib']:.0f} MiB",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def targets(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Return (target, measured, verdict) for every target of issue 11."""
    sizes = {s["nodes"]: s for s in results["sizes"]}
    checks: list[tuple[str, str, str]] = []

    def check(target: str, measured: str | None, ok: bool | None) -> None:
        verdict = "not measured" if ok is None else ("met" if ok else "**NOT met**")
        checks.append((target, measured or "-", verdict))

    thirty = sizes.get(30)
    if thirty:
        sync = thirty["median"]["sync"]["wall"]
        rsync, extrapolated = rsync_time(results["sizes"], 30)
        tuned, _ = rsync_time(results["sizes"], 30, "rsync_tuned")
        ratio = rsync / sync if rsync else None
        text = (
            f"{ratio:.1f}x" + (" (rsync extrapolated)" if extrapolated else "") if ratio else None
        )
        if text and tuned:
            text += f" (against the loop tuned to curve25519: {tuned / sync:.1f}x)"
        check(
            "30 nodes: `sync` >= 10x faster than the rsync loop",
            text,
            None if ratio is None else ratio >= 10,
        )
        floor = thirty["median"].get("floor_true", {}).get("wall")
        sftp = thirty["median"].get("floor_sftp", {}).get("wall")
        text = f"{sync / floor:.2f}x `ssh true`" if floor else None
        if text and sftp:
            text += f" ({sync / sftp:.2f}x `ssh -s sftp`)"
        check(
            "30 nodes: `sync` <= 1.5x the OpenSSH floor",
            text,
            None if not floor else sync / floor <= 1.5,
        )
    else:
        check("30 nodes: `sync` >= 10x faster than the rsync loop", None, None)
        check("30 nodes: `sync` <= 1.5x the OpenSSH floor", None, None)
    small, large = sizes.get(100), sizes.get(1000)
    if small and large:
        ratio = (
            large["median"]["sync"]["cpu_ms_per_node"] / small["median"]["sync"]["cpu_ms_per_node"]
        )
        check(
            "keysyncd CPU/node (sync) at 1,000 nodes within 1.2x of 100 nodes",
            f"{ratio:.2f}x",
            ratio <= 1.2,
        )
    else:
        check("keysyncd CPU/node (sync) at 1,000 nodes within 1.2x of 100 nodes", None, None)
    if large:
        cpu = large["median"]["sync"]["cpu_ms_per_node"]
        check("keysyncd CPU/node (sync) at 1,000 nodes <= 10 ms", f"{cpu:.1f} ms", cpu <= 10)
        wall = large["median"]["sync"]["wall"]
        check("sync with read-back of 1,000 nodes <= 25 s", f"{wall:.1f} s", wall <= 25)
    else:
        check("keysyncd CPU/node (sync) at 1,000 nodes <= 10 ms", None, None)
        check("sync with read-back of 1,000 nodes <= 25 s", None, None)
    slower = [
        s["nodes"]
        for s in results["sizes"]
        if s["median"]["verify"]["wall"] > s["median"]["sync"]["wall"]
    ]
    check(
        "`verify` <= `sync` (every size)",
        "slower at " + ", ".join(map(str, slower)) if slower else "at every size",
        not slower,
    )
    peak = max(s["peak_rss_mib"] for s in results["sizes"])
    check("controller peak RSS <= 150 MB", f"{peak:.0f} MiB ({peak / MB:.0f} MB)", peak <= 150 * MB)
    daemon = results.get("daemon")
    if daemon:
        rss = daemon["rss_mib"]
        check(
            f"daemon RSS after {daemon['cycles']} cycles with {daemon['retained']} retained "
            f"reports of a {daemon['report_nodes']}-node fleet <= 150 MB",
            f"{rss:.0f} MiB (peak {daemon['peak_rss_mib']:.0f} MiB)",
            rss <= 150 * MB,
        )
    else:
        check("daemon RSS with 1,000 retained reports of a 1,000-node fleet <= 150 MB", None, None)
    return checks


def targets_table(results: dict[str, Any]) -> str:
    """Return the targets as a Markdown table."""
    rows = ["| target | measured | verdict |", "|---|---|---|"]
    rows += [f"| {t} | {m} | {v} |" for t, m, v in targets(results)]
    return "\n".join(rows) + "\n"


def retention_table(retention: dict[str, Any]) -> str:
    """Return the 0-vs-N retained reports comparison as a Markdown table."""
    low, high = retention["0"], retention[str(retention["retained"])]
    rows = [
        f"| with {retention['nodes']} nodes | {low['reports_on_disk']} reports: time | peak RSS | "
        f"{high['reports_on_disk']} reports: time | peak RSS | time ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, sample in low["commands"].items():
        other = high["commands"][name]
        rows.append(
            f"| `keysyncd {name}` | {sample['wall']:.2f} s | {sample['peak_rss_mib']:.0f} "
            f"MiB | {other['wall']:.2f} s | {other['peak_rss_mib']:.0f} MiB | "
            f"{other['wall'] / sample['wall']:.2f} |"
        )
    a, b = low["metrics"], high["metrics"]
    rows.append(
        f"| metrics scrape (daemon) | {a['scrape_s'] * 1000:.1f} ms | {a['rss_mib']:.0f} MiB"
        f" (daemon) | {b['scrape_s'] * 1000:.1f} ms | {b['rss_mib']:.0f} MiB (daemon) | "
        f"{b['scrape_s'] / a['scrape_s']:.2f} |"
    )
    return "\n".join(rows) + "\n"


def _plot_rsync(
    axes: Any, sizes: list[dict[str, Any]], counts: list[int], name: str, label: str, color: str
) -> None:
    """Plot one rsync loop: measured (solid), then extrapolated (dotted)."""
    measured = [(s["nodes"], s["median"][name]["wall"]) for s in sizes if name in s["median"]]
    if not measured:
        return
    axes.plot(*zip(*measured, strict=True), "-", marker="s", color=color, label=label)
    extrapolated = [(c, rsync_time(sizes, c, name)[0]) for c in counts if c >= measured[-1][0]]
    if len(extrapolated) > 1:
        axes.plot(
            *zip(*extrapolated, strict=True), ":", color=color, label=f"{label}, extrapolated"
        )


def plot(results: dict[str, Any], path: Path) -> None:
    """Write a PNG: wall time against nodes, and CPU per node against nodes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["sizes"]
    counts = [s["nodes"] for s in sizes]
    figure, (times, cpu) = plt.subplots(1, 2, figsize=(13, 5.2))
    labels = {
        "sync": "keysyncd sync",
        "verify": "keysyncd verify",
        "rotate": "keysyncd rotate",
        "floor_true": "floor: ssh true",
        "floor_sftp": "floor: ssh -s sftp",
    }
    for name, label in labels.items():
        points = [(s["nodes"], s["median"][name]["wall"]) for s in sizes if name in s["median"]]
        if points:
            style = "--" if name.startswith("floor") else "-"
            times.plot(*zip(*points, strict=True), style, marker="o", label=label)
    for name, label, color in (
        ("rsync", "rsync loop (kolla)", "black"),
        ("rsync_tuned", "rsync loop, curve25519", "grey"),
    ):
        _plot_rsync(times, sizes, counts, name, label, color)
    times.set(
        xscale="log",
        yscale="log",
        xlabel="nodes",
        ylabel="wall time (s)",
        title="Time against fleet size (median)",
    )
    times.grid(True, which="both", alpha=0.3)
    times.legend(fontsize=8)
    for name in COMMANDS:
        cpu.plot(
            counts,
            [s["median"][name]["cpu_ms_per_node"] for s in sizes],
            marker="o",
            label=f"keysyncd {name}",
        )
    cpu.plot(
        counts,
        [s["median"]["sync"]["sshd_ms_per_node"] for s in sizes],
        "--",
        marker="o",
        label="sshd side during sync",
    )
    cpu.axhline(10, color="red", alpha=0.4, linestyle=":", label="target at 1,000: 10 ms")
    cpu.set(
        xscale="log",
        xlabel="nodes",
        ylabel="CPU per node (ms)",
        title="CPU per node (command start-up included)",
    )
    cpu.set_ylim(bottom=0)
    cpu.grid(True, which="both", alpha=0.3)
    cpu.legend(fontsize=8)
    machine = results["machine"]
    figure.suptitle(
        f"keysyncd at scale - {machine['cpu']}, {machine['cores']} cores "
        f"(shared with the local sshd nodes), {machine['openssh']}",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
