"""Render results for people. Pure functions returning lines of text; the CLI prints them.

The action types are imported for type checking only: ``status`` and ``plan`` render here
without loading the modules that reach the nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keysyncd.core.nodeplan import describe_changes
from keysyncd.core.text import printable
from keysyncd.core.times import human
from keysyncd.core.vocabulary import GOOD, Outcome

if TYPE_CHECKING:
    from keysyncd.actions.context import ActionResult
    from keysyncd.actions.inspect import RepositoryPlan
    from keysyncd.actions.jobs import RepositoryRun
    from keysyncd.core.report import NodeOutcome

DRY_RUN = "dry-run"  # keysyncd.actions.context.DRY_RUN (a test keeps them equal)


def epoch(value: float | str | None) -> float | None:
    """Return epoch seconds for epoch seconds (schema 1 reports) or an RFC 3339 string, None
    for None or anything else (a hand edit)."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def when(value: float | str | None) -> str:
    """Return ``2026-11-22 20:00:00Z`` for epoch seconds or an RFC 3339 string, ``-`` for None."""
    if value is None:
        return "-"
    moment = epoch(value)
    return "?" if moment is None else human(moment)


def node_table(nodes: Mapping[str, NodeOutcome]) -> list[str]:
    """Return one line per node: name, status, seconds, and the error or what changed."""
    lines = []
    width = max((len(name) for name in nodes), default=4)
    for name, node in sorted(nodes.items()):
        detail = f"{node.reason}: {node.error}" if node.error else describe_changes(node.changes)
        lines.append(f"  {name:<{width}}  {node.status:<9} {node.duration:6.2f}s  {detail}")
    return lines


def summary(nodes: Mapping[str, NodeOutcome]) -> str:
    """Return ``summary: 4/5 nodes in sync, 1 not``."""
    good = sum(1 for node in nodes.values() if node.status in GOOD)
    bad = len(nodes) - good
    return f"summary: {good}/{len(nodes)} nodes in sync" + (f", {bad} not" if bad else "")


def _report(result: ActionResult) -> str:
    if result.report is None:
        return ""
    if result.report_error is not None:
        return f" (report {result.report.id} NOT WRITTEN: kept in the journal)"
    return f" (report {result.report.id})"


def action(name: str, verb: str, result: ActionResult) -> list[str]:
    """Return the lines of one repository's sync, verify or init: outcome, report, nodes."""
    report = _report(result)
    lines = [f"{name}: {verb} {result.outcome}{report}"]
    lines += [f"{name}: {message}" for message in result.messages]
    lines += _previews(result.preview)
    if result.nodes:
        lines += [*node_table(result.nodes), summary(result.nodes)]
    return lines


def rotation(name: str, result: ActionResult) -> list[str]:
    """Return the lines describing one repository's rotation (or dry run)."""
    lines = []
    plan = result.rotation
    if plan is not None:
        verb = "would promote" if result.outcome == DRY_RUN else "promoted"
        if result.outcome in (Outcome.DEFERRED, Outcome.FAILED):
            verb = "did not promote"
        retired = ", ".join(map(str, plan.retire)) or "none"
        lines.append(
            f"{name}: {verb} staged key 0 to primary {plan.new_primary}, "
            f"new staged key 0, retired: {retired}"
        )
    lines += [f"{name}: {message}" for message in result.messages if message]
    lines += _previews(result.preview)
    if result.nodes:
        lines += [*node_table(result.nodes), summary(result.nodes)]
    lines.append(f"{name}: outcome {result.outcome}{_report(result)}")
    return lines


def _previews(preview: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = []
    for node, changes in sorted(preview.items()):
        head = [f"{k} {changes[k]}" for k in ("error", "primary") if changes.get(k) is not None]
        rest = {k: v for k, v in changes.items() if k not in ("error", "primary")}
        parts = ", ".join([*head, describe_changes(rest)] if describe_changes(rest) else head)
        lines.append(f"  {node}: {parts or 'nothing to change'}")
    return lines


def repository_summary(runs: Iterable[RepositoryRun]) -> list[str]:
    """Return ``summary: fernet-tokens ok`` lines, one per repository (borgmatic's habit)."""
    return [f"summary: {run.summary()}" for run in runs]


def plan_lines(plan: RepositoryPlan) -> list[str]:
    """Return the key lifecycle table and the lint warnings of ``plan``."""
    lines = [
        f"{plan.name}: next rotations: "
        + ", ".join(when(t) for t in plan.rotations[:3])
        + (" ..." if len(plan.rotations) > 3 else "")
    ]
    lines.append(f"  {'key':>5}  {'staged':<21} {'primary':<21} {'secondary':<21} retired")
    for life in plan.lifecycles:
        lines.append(
            f"  {life.index:>5}  {when(life.staged_at):<21} {when(life.primary_at):<21} "
            f"{when(life.secondary_at):<21} {when(life.retired_at)}"
        )
    lines.extend(f"  note: {kept}" for kept in plan.kept_now)
    lines.extend(f"  WARNING: {warning}" for warning in plan.warnings)
    if not plan.warnings:
        lines.append("  config: max_active_keys is large enough for this schedule")
    return lines


def status_lines(status: dict[str, Any]) -> list[str]:
    """Return a readable status of one repository."""
    lines = [
        f"{status['name']} ({status['kind']}) at {status['path']}: generation "
        f"{status['generation']}, last rotation {status['last_rotation_at'] or '-'}, "
        f"next {status['next_rotation_at'] or '-'}"
    ]
    for key in status["keys"]:
        lines.append(
            f"  {key['index']:>5} {key['role']:<9} sha256:{key['sha256'][:16]}  "
            f"demoted {key['demoted_at'] or '-'}"
        )
    lines.extend(f"  PROBLEM: {p}" for p in status["problems"])
    lines.extend(f"  WARNING: {w}" for w in status["warnings"])
    clock = status.get("clock")
    if clock and not clock["trusted"]:
        lines.append(f"  CLOCK NOT TRUSTED: {clock['reason']}")
    elif clock and clock.get("skew") is not None:
        lines.append(
            f"  clock: {clock['skew']:+.1f}s from the median of {clock['observed_nodes']} "
            f"node(s) at {clock['checked_at'] or '-'}"
        )
    blocked = status.get("rotation_blocked_by")
    if blocked:
        lines.append(
            f"  BLOCKED: after_rotate hook {' '.join(blocked['hook'])!r} failed "
            f"(status {blocked['status']}); each rotate retries it first"
        )
    for node, entry in sorted(status.get("nodes", {}).items()):
        reason = entry.get("reason")
        error = f": {reason}: {printable(str(entry['error']))}" if entry.get("error") else ""
        verified = when(entry.get("last_verified_at"))
        lines.append(
            f"  node {node}: {entry.get('status') or 'never checked'} (verified {verified}){error}"
        )
    return lines


def daemon_lines(info: dict[str, Any] | None) -> list[str]:
    """Return the daemon's PID, next rotations and last job, or that it is not running."""
    if info is None:
        return ["daemon: not running"]
    lines = [f"daemon: running as PID {info['pid']} since {when(info.get('started_at'))}"]
    for name, next_at in sorted((info.get("next_rotation") or {}).items()):
        lines.append(f"  next rotation of {name}: {next_at or '-'}")
    job = info.get("last_job")
    if job:
        lines.append(
            f"  last action: {job['action']} ({job['trigger']}) {job['outcome']} "
            f"at {when(job.get('ended_at'))}"
        )
    if info.get("last_error"):
        lines.append(f"  last error: {printable(str(info['last_error']))}")
    return lines


def report_list_lines(summaries: list[dict[str, Any]]) -> list[str]:
    """Return one line per report summary: id, action, trigger, repository, outcome, nodes
    in sync of all (every field escaped: the index is a file anyone with access may edit)."""
    if not summaries:
        return ["no reports"]
    lines = [f"{'id':<44} {'action':<8} {'trigger':<8} {'repository':<16} {'outcome':<9} nodes"]
    for d in summaries:
        fields = [printable(str(d.get(key, "?"))) for key in ("id", "action", "trigger")]
        fields += [printable(str(d.get(key, "?"))) for key in ("repository", "outcome")]
        ident, action, trigger, repository, outcome = fields
        lines.append(
            f"{ident:<44} {action:<8} {trigger:<8} {repository:<16} {outcome:<9} "
            f"{d.get('good', '?')}/{d.get('nodes', '?')}" + ("  FORCED" if d.get("forced") else "")
        )
    return lines


def report_lines(d: dict[str, Any]) -> list[str]:
    """Return a readable rendering of one report with a table per node."""
    lines = [
        f"report {d.get('id')}",
        f"  action {d.get('action')} ({d.get('trigger')}) on {d.get('repository')}: "
        f"{d.get('outcome')}" + ("  [FORCED]" if d.get("forced") else ""),
        f"  from {when(d.get('started_at'))} to {when(d.get('ended_at'))}, "
        f"generation {d.get('generation')}",
    ]
    lines += [f"  {printable(str(message))}" for message in d.get("messages") or []]
    expected = (d.get("expected") or {}).items()
    lines.append("  expected keys: " + ", ".join(f"{i}:{digest[:12]}" for i, digest in expected))
    nodes = d.get("nodes") or {}
    if nodes:
        width = max(len(name) for name in nodes)
        lines.append(f"  {'node':<{width}}  {'status':<9} {'seconds':>7}  detail")
        for name, node in sorted(nodes.items()):
            detail = printable(
                str(node.get("error") or describe_changes(node.get("changes") or {}))
            )
            lines.append(
                f"  {name:<{width}}  {node.get('status', '?'):<9} "
                f"{node.get('duration', 0):>7.2f}  {detail}"
            )
    return lines
