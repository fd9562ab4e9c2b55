"""Render results for people: pure functions returning lines (action types imported for
type checking only: ``status`` and ``plan`` use this module too)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keysyncd.core.changewords import describe_changes
from keysyncd.core.text import MAX_DETAIL, named, printable, short_digest
from keysyncd.core.times import rfc3339
from keysyncd.core.vocabulary import CHANGED, GOOD, Outcome

if TYPE_CHECKING:
    from keysyncd.actions.context import ActionResult
    from keysyncd.core.report import NodeOutcome

DRY_RUN = "dry-run"  # keysyncd.actions.context.DRY_RUN (a test keeps them equal)


def epoch(value: float | str | None) -> float | None:
    """Return epoch seconds for epoch seconds or an RFC 3339 string, None for anything else."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def when(value: float | str | None) -> str:
    """Return ``2026-11-22T20:00:00Z`` for epoch seconds or RFC 3339, ``-`` for None, else ``?``."""
    if value is None:
        return "-"
    moment = epoch(value)
    return "?" if moment is None else rfc3339(moment) or "?"


def node_table(nodes: Mapping[str, NodeOutcome]) -> list[str]:
    """Return one line per node: name, status, seconds, and the error or the changes."""
    lines = []
    width = max((len(name) for name in nodes), default=4)
    for name, node in sorted(nodes.items()):
        reason = f"{node.reason}: " if node.reason else ""  # never "None: ..."
        done = node.status in CHANGED
        detail = (
            f"{reason}{shown(node.error, MAX_DETAIL)}"
            if node.error
            else shown(_changes(node.changes, done), 4 * MAX_DETAIL)  # escaped, like reports
        )
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
    lines = [f"{name}: {verb} {result.outcome}{_report(result)}{_would(verb, result)}"]
    return lines + [f"{name}: {message}" for message in result.messages] + _nodes(result)


def _nodes(result: ActionResult) -> list[str]:
    """Return what differs on each node before the action, then the table of the nodes."""
    nodes = [*node_table(result.nodes), summary(result.nodes)] if result.nodes else []
    return _previews(result.preview) + nodes


def rotation(name: str, result: ActionResult) -> list[str]:
    """Return the lines of one repository's rotation (or dry run)."""
    lines = []
    plan = result.rotation
    if plan is not None:
        retire = [str(index) for index in plan.retire]
        retired = named("key", retire) if retire else "no key"
        promote = f"staged key 0 to primary {plan.new_primary}"
        did = f"promoted {promote}, staged a new key 0 and retired {retired}"
        if result.outcome == DRY_RUN and result.would == Outcome.DEFERRED:
            line = f"would defer, nothing would change: it would have {did}"
        elif result.outcome == DRY_RUN:
            line = f"would promote {promote}, stage a new key 0 and retire {retired}"
        elif result.promoted:
            line = did
        else:  # deferred, or stopped before it began (a before_rotate hook failed)
            line = f"rotation {result.outcome}, nothing changed: it would have {did}"
        lines.append(f"{name}: {line}")
    lines += [f"{name}: {message}" for message in result.messages if message]
    lines += _nodes(result)
    lines.append(f"{name}: outcome {result.outcome}{_report(result)}{_would('rotate', result)}")
    return lines


def _would(verb: str, result: ActionResult) -> str:
    """Return `` (the real sync would end partial)`` for a dry run that predicted it."""
    if result.outcome != DRY_RUN or result.would is None:
        return ""
    return f" (the real {verb} would end {result.would})"


def _previews(preview: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Return what differs on each node before the action, or that nothing does."""
    lines = []
    for node, changes in sorted(preview.items()):
        rest = {k: v for k, v in changes.items() if k not in ("error", "primary")}
        differs = describe_changes(rest)
        if changes.get("error") is not None:
            line = f"error {shown(changes['error'], MAX_DETAIL)}"
        elif changes.get("primary") is not None:
            against = f"the key set with primary {changes['primary']}"
            line = f"differs from {against}: {differs}" if differs else f"holds {against}"
        else:
            line = f"differs: {differs}" if differs else "nothing to change"
        lines.append(f"  {node}: {line}")
    return lines


def report_list_lines(summaries: list[dict[str, Any]]) -> list[str]:
    """Return one line per report summary (every field escaped: the index may be edited)."""
    if not summaries:
        return ["no reports"]
    lines = [f"{'id':<44} {'action':<8} {'trigger':<8} {'repository':<16} {'outcome':<9} nodes"]
    for d in summaries:
        keys = ("id", "action", "trigger", "repository", "outcome")
        ident, action, trigger, repository, outcome = (printable(str(d.get(k, "?"))) for k in keys)
        lines.append(
            f"{ident:<44} {action:<8} {trigger:<8} {repository:<16} {outcome:<9} "
            f"{shown(d.get('good', '?'))}/{shown(d.get('nodes', '?'))}"
            + ("  FORCED" if d.get("forced") else "")
        )
    return lines


def shown(value: Any, limit: int = 200) -> str:
    """Return ``value`` as text with every control character escaped (``None`` as ``-``):
    what a report or the journal holds may have been edited by anyone who could write it."""
    return "-" if value is None else printable(str(value), limit)


def seconds(value: Any) -> str:
    """Return ``  1.25`` for a number of seconds, the escaped value for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:>7.2f}"
    return f"{shown(value, 20):>7}"


def hook_state(status: Any, problem: Any = None) -> str:
    """Return how a hook ended: ``exited with status 3``, its problem, or ``did not finish``."""
    if problem:
        return shown(problem, 400)
    if status is None:
        return "did not finish (could not run, timed out or was killed)"
    return f"exited with status {shown(status, 20)}"


def report_lines(d: dict[str, Any]) -> list[str]:
    """Return one report for people, a table per node (every field escaped: it may be edited)."""
    lines = [
        f"report {shown(d.get('id'))}",
        f"  action {shown(d.get('action'))} ({shown(d.get('trigger'))}) on "
        f"{shown(d.get('repository'))}: {shown(d.get('outcome'))}"
        + ("  [FORCED]" if d.get("forced") else ""),
        f"  from {when(d.get('started_at'))} to {when(d.get('ended_at'))}, "
        f"generation {shown(d.get('generation'))}",
    ]
    lines += [f"  {shown(message, MAX_DETAIL)}" for message in _listed(d.get("messages"))]
    expected = _mapping(d.get("expected")).items()
    lines.append(
        "  expected keys: " + ", ".join(f"{shown(i)}:{short_digest(shown(v))}" for i, v in expected)
    )
    lines += _hook_lines(d.get("details"))
    nodes = _mapping(d.get("nodes"))
    if nodes:
        names = {name: shown(name) for name in nodes}
        width = max(len(name) for name in names.values())
        lines.append(f"  {'node':<{width}}  {'status':<9} {'seconds':>7}  detail")
        for name, node in sorted(nodes.items(), key=lambda item: str(item[0])):
            node = node if isinstance(node, dict) else {"error": node}
            done = node.get("status") in CHANGED
            detail = node.get("error") or _changes(node.get("changes"), done)
            lines.append(
                f"  {names[name]:<{width}}  {shown(node.get('status', '?')):<9} "
                f"{seconds(node.get('duration', 0))}  {shown(detail, MAX_DETAIL)}"
            )
    return lines


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _changes(value: Any, done: bool = False) -> str:
    """Return a node's changes in one line (as they are if damaged: the report still shows)."""
    try:
        return describe_changes(_mapping(value), done)
    except (TypeError, KeyError, ValueError):
        return str(value)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _hook_lines(details: Any) -> list[str]:
    """Return a line per hook run the report holds, and the end of its output."""
    runs = details.get("hooks") if isinstance(details, dict) else None
    lines = []
    for run in _listed(runs):
        run = run if isinstance(run, dict) else {}
        command = " ".join(shown(part) for part in _listed(run.get("command")))
        ended = hook_state(run.get("status"), run.get("problem"))
        lines.append(f"  {shown(run.get('event'))} hook {command!r} {ended}")
        output = str(run.get("output") or "").strip()
        if output:
            lines.append(f"    output: {shown(output[-MAX_DETAIL:], MAX_DETAIL)}")
    return lines
