"""The commands that only look, status and plan, and their lines for people. No lock, no
SSH, no writes. ``status`` exits 1 when anything needs attention (``needs_attention``)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from keysyncd.actions import operations
from keysyncd.actions.inspect import RepositoryPlan
from keysyncd.commands import render
from keysyncd.commands.exits import Exit
from keysyncd.commands.output import Output
from keysyncd.commands.render import shown, when
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.text import MAX_DETAIL, plural, printable, short_digest
from keysyncd.core.times import rfc3339
from keysyncd.core.vocabulary import GOOD, STALE, NodeStatus, job_name
from keysyncd.io.runtime.children import read_daemon_info


def status_of(config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
    """Return the status of ``repository`` from its kind's read-only view."""
    return operations.of(repository).status(config, repository, now)


def chosen(config: Config, name: str | None) -> list[RepositoryConfig]:
    """Return every repository, or only ``name`` (UsageError if there is none)."""
    return [config.repository(name)] if name else list(config.repositories)


def cmd_status(args: argparse.Namespace, config: Config, out: Output) -> int:
    now = time.time()
    repositories = chosen(config, args.repo)
    statuses = [status_of(config, r, now) for r in repositories]
    daemon = daemon_json(read_daemon_info(config.state_dir))
    attention = [
        f"{status['name']}: {reason}"
        for repository, status in zip(repositories, statuses, strict=True)
        for reason in needs_attention(repository, status, now)
    ]
    code = Exit.ATTENTION if attention else Exit.DONE
    out.document(
        {"daemon": daemon, "repositories": statuses, "attention": attention, "exit_code": code}
    )
    out.lines(daemon_lines(daemon))
    out.lines(line for status in statuses for line in status_lines(status))
    out.lines(f"ATTENTION: {shown(reason, 2000)}" for reason in attention)
    return int(code)


def needs_attention(repository: RepositoryConfig, status: dict[str, Any], now: float) -> list[str]:
    """Return why ``status`` needs the operator (empty: all is well)."""
    reasons = [f"problem: {problem}" for problem in status["problems"]]
    for node, entry in sorted(status["nodes"].items()):
        if entry.get("status") not in GOOD:  # a stale node too: it needs a sync (SPEC 5)
            reasons.append(node_attention(node, entry))
    if status.get("rotation_blocked_by"):
        reasons.append("rotation blocked by a failed after_rotate hook")
    if revoking := status.get("revocation"):
        held = ", ".join(revoking["unverified_nodes"]) or "none"
        reasons.append(
            f"the revocation of sha256:{shown(revoking['sha256'][:16])} is unfinished (nodes "
            f"that may still hold it: {shown(held)}); 'keysyncd revoke --repo "
            f"{shown(status['name'])}' finishes it, rotation is blocked until then"
        )
    clock = status.get("clock")
    if clock and not clock["trusted"]:
        reasons.append(
            f"clock not trusted: {clock['reason']}; nothing is retired or rotated until the "
            "clocks agree again"
        )
    if status.get("unwritten_reports"):
        reasons.append(
            f"{plural(status['unwritten_reports'], 'report')} not yet written to report_dir "
            "(kept in the journal: the next action that can writes them)"
        )
    if status.get("rotation_overdue_since"):
        reasons.append(f"rotation overdue: it was due at {status['rotation_overdue_since']}")
    return reasons


def daemon_json(info: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return the daemon's self-description with every time as RFC 3339."""
    if info is None:
        return None
    document = {**info, "started_at": rfc3339(render.epoch(info.get("started_at")))}
    job = info.get("last_job")
    if isinstance(job, dict):
        times = {key: rfc3339(render.epoch(job.get(key))) for key in ("started_at", "ended_at")}
        document["last_job"] = {**job, **times}
    return document


def cmd_plan(args: argparse.Namespace, config: Config, out: Output) -> int:
    now = time.time()
    plans = [operations.of(r).lifecycles(config, r, now) for r in chosen(config, args.repo)]
    out.document({"repositories": [plan_json(plan) for plan in plans]})
    out.lines(line for plan in plans for line in plan_lines(plan))
    return int(Exit.DONE)


def plan_json(plan: RepositoryPlan) -> dict[str, Any]:
    """Return what ``plan`` shows for one repository, every time as RFC 3339."""
    return {
        "name": plan.name,
        "rotations": [rfc3339(at) for at in plan.rotations],
        "keys": [
            {key: rfc3339(value) if key.endswith("_at") else value for key, value in life.items()}
            for life in (asdict(lifecycle) for lifecycle in plan.lifecycles)
        ],
        "kept_now": plan.kept_now,
        "warnings": plan.warnings,
    }


def plan_lines(plan: RepositoryPlan) -> list[str]:
    """Return the lifecycle table (the kind's fields as columns), notes and warnings."""
    more = " ..." if len(plan.rotations) > 3 else ""
    lines = [f"{plan.name}: next rotations: {', '.join(when(t) for t in plan.rotations[:3])}{more}"]
    rows = [asdict(life) for life in plan.lifecycles]
    if rows:
        # the title of ``index`` (a key's number, right-aligned) is "key", of ``x_at`` "x"
        names = ["key" if n == "index" else n.removesuffix("_at") for n in rows[0]]
        table = [names, *([_cell(n, v) for n, v in row.items()] for row in rows)]
        least = [20 if n.endswith("_at") else 5 for n in rows[0]]  # a time is 20 wide
        widths = [max(least[i], *(len(line[i]) for line in table)) for i in range(len(names))]
        for line in table:
            cells = (
                f"{c:>{w}}" if n == "key" and "index" in rows[0] else f"{c:<{w}}"
                for n, c, w in zip(names, line, widths, strict=True)
            )
            lines.append(("  " + "  ".join(cells)).rstrip())
    lines.extend(f"  note: {kept}" for kept in plan.kept_now)
    lines.extend(f"  WARNING: {warning}" for warning in plan.warnings)
    if not plan.warnings:
        lines.append(f"  config: {plan.sound}")
    return lines


def _cell(name: str, value: Any) -> str:
    """Return a lifecycle field as the plan's table shows it (a time, a name, a number)."""
    return when(value) if name.endswith("_at") else shown(value, 60)


def status_lines(status: dict[str, Any]) -> list[str]:
    """Return a readable status of one repository."""
    lines = [
        f"{status['name']} ({status['kind']}) at {status['path']}: generation "
        f"{status['generation']}, last rotation {status['last_rotation_at'] or '-'}, "
        f"next {status['next_rotation_at'] or '-'}"
    ]
    lines += _key_lines(status)
    lines.extend(f"  PROBLEM: {shown(p, 2000)}" for p in status["problems"])
    lines.extend(f"  WARNING: {shown(w, 2000)}" for w in status["warnings"])
    clock = status.get("clock")
    if clock and not clock["trusted"]:
        lines.append(f"  CLOCK NOT TRUSTED: {shown(clock['reason'], 2000)}")
    elif clock and clock.get("skew") is not None:
        observed = clock["observed_nodes"]
        nodes = (
            plural(observed, "node") if isinstance(observed, int) else f"{shown(observed)} nodes"
        )
        lines.append(
            f"  clock: {clock['skew']:+.1f}s from the median of {nodes} "
            f"at {clock['checked_at'] or '-'}"
        )
    blocked = status.get("rotation_blocked_by")
    if blocked:
        hook = " ".join(shown(part) for part in blocked["hook"])
        lines.append(
            f"  BLOCKED: after_rotate hook {hook!r} {shown(blocked['outcome'], 400)}; "
            "each rotate retries it first"
        )
    lines.extend(node_line(node, entry) for node, entry in sorted(status.get("nodes", {}).items()))
    return lines


def _key_lines(status: dict[str, Any]) -> list[str]:
    """Return a line per key (with its node, if any) and per old public key kept."""
    lines = []
    for key in status["keys"]:
        node = f"  node {shown(key['node'])}" if key.get("node") else ""
        lines.append(
            f"  {key['index']:>5} {key['role']:<9} sha256:{short_digest(key['sha256'])}  "
            f"demoted {key['demoted_at'] or '-'}{node}"
        )
    return lines + [
        f"  retiring {shown(old['public'])} (node {shown(old['node'])}): goes from "
        f"{old['safe_at'] or 'once its node is verified signing with a newer pair'}"
        for old in status.get("retiring", [])
    ]


def node_line(node: str, entry: Mapping[str, Any]) -> str:
    """Return a node's line of ``status``: its status, when checked, why not in sync."""
    status = entry.get("status")
    if status is None:
        return f"  node {shown(node)}: never checked"
    checked, in_sync = shown(entry.get("checked_at")), shown(entry.get("last_verified_at"))
    times = f"last check {checked}, last in sync {in_sync}"
    return f"  node {shown(node)}: {shown(status)} ({times}){_why(entry)}"


def _why(entry: Mapping[str, Any]) -> str:
    """Return ``: why`` a node is not in sync (its error, or why it is stale), else ``""``."""
    if entry.get("error"):
        reason = f"{shown(entry['reason'])}: " if entry.get("reason") else ""
        return f": {reason}{shown(entry['error'], MAX_DETAIL)}"
    if entry.get("status") == STALE and entry.get("stale"):
        return f": {shown(entry['stale'], MAX_DETAIL)}"
    return ""


# What a node that needs attention is, as a sentence (never "node node2 is differs").
NODE_ATTENTION: dict[str, str] = {
    NodeStatus.PENDING: "was not checked to the end (its action was interrupted)",
    NodeStatus.DIFFERS: "differs from the controller",
    NodeStatus.DIVERGED: "has diverged: it holds newer or unrelated keys, left alone",
    NodeStatus.FAILED: "failed its last check",
    NodeStatus.SKIPPED: "was skipped (backing off after failures)",
    STALE: "is stale",
}


def node_attention(node: str, entry: Mapping[str, Any]) -> str:
    """Return why a node not in sync needs attention (``node node2 differs from ...``)."""
    status = entry.get("status")
    if status is None:
        return f"node {node} was never checked"
    phrase = NODE_ATTENTION.get(status, f"has status {shown(status)}")  # a hand-edited journal
    detail = {STALE: entry.get("stale"), NodeStatus.FAILED: entry.get("reason")}.get(status)
    return f"node {node} {phrase}" + (f": {shown(detail, MAX_DETAIL)}" if detail else "")


def daemon_lines(info: dict[str, Any] | None) -> list[str]:
    """Return the daemon's PID, next rotations and last job, or that it is not running."""
    if info is None:
        return ["daemon: not running"]
    lines = [f"daemon: running as PID {shown(info['pid'])} since {when(info.get('started_at'))}"]
    for name, next_at in sorted((info.get("next_rotation") or {}).items()):
        lines.append(f"  next rotation of {shown(name)}: {shown(next_at or None)}")
    job = info.get("last_job")
    if job:
        name = job_name(shown(job["action"]), shown(job["trigger"]))
        ended = when(job.get("ended_at"))
        lines.append(f"  last action: {name} {shown(job['outcome'])} at {ended}")
    if info.get("last_error"):
        lines.append(f"  last error: {printable(str(info['last_error']))}")
    return lines
