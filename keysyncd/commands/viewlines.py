"""Render what ``status`` and ``plan`` show, for people: a repository's keys, nodes and
clock, its key lifecycles, the daemon. Pure functions returning lines of text."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from keysyncd.commands.render import shown, when
from keysyncd.core.text import MAX_DETAIL, plural, printable, short_digest
from keysyncd.core.vocabulary import STALE, NodeStatus, job_name

if TYPE_CHECKING:
    from keysyncd.actions.inspect import RepositoryPlan


def plan_lines(plan: RepositoryPlan) -> list[str]:
    """Return the key lifecycle table (its columns the kind's lifecycle fields: ``key``,
    ``staged``, ``primary``... or ``node``, ``key``, ``staged``, ``signing``...), the notes
    and the lint warnings of ``plan``."""
    lines = [
        f"{plan.name}: next rotations: "
        + ", ".join(when(t) for t in plan.rotations[:3])
        + (" ..." if len(plan.rotations) > 3 else "")
    ]
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
    """Return a line per key (with its node, for a kind with a pair per node) and per old
    public key kept until it is safe to delete."""
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
    """Return a node's line of ``status``: what it is now (``stale`` when verified before
    the controller changed), when it was last checked, when it was last in sync, and why
    it is not (``  node node2: stale (last check 2026-12-07T10:00:00Z, last in sync
    2026-12-07T10:00:00Z): last verified holding generation 3; the controller is at
    generation 4``)."""
    status = entry.get("status")
    if status is None:
        return f"  node {shown(node)}: never checked"
    times = (
        f"last check {shown(entry.get('checked_at'))}, "
        f"last in sync {shown(entry.get('last_verified_at'))}"
    )
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
    """Return why a node that is not in sync needs attention, as a sentence:
    ``node node2 differs from the controller``, ``node node3 failed its last check:
    unreachable``, ``node node1 is stale: last verified holding generation 1; ...``."""
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
        lines.append(
            f"  last action: {name} {shown(job['outcome'])} at {when(job.get('ended_at'))}"
        )
    if info.get("last_error"):
        lines.append(f"  last error: {printable(str(info['last_error']))}")
    return lines
