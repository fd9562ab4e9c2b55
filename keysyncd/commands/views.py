"""The commands that only look: status and plan. No lock, no SSH, no writes.

``status`` exits 1 when anything needs attention: a node not in sync (or never checked, or
stale: verified before the controller changed), a rotation blocked by a failed hook or
overdue, a problem with the local repository.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from typing import Any

from keysyncd.actions import operations
from keysyncd.actions.inspect import RepositoryPlan
from keysyncd.commands import render, viewlines
from keysyncd.commands.exits import Exit
from keysyncd.commands.output import Output
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.text import plural
from keysyncd.core.times import rfc3339
from keysyncd.core.vocabulary import GOOD
from keysyncd.io.runtime.children import read_daemon_info


def status_of(config: Config, repository: RepositoryConfig, now: float) -> dict[str, Any]:
    """Return the status of ``repository`` from its kind's read-only view."""
    return operations.of(repository).status(config, repository, now)


def plan_of(config: Config, repository: RepositoryConfig, now: float) -> RepositoryPlan:
    """Return the plan of ``repository`` from its kind's read-only view."""
    return operations.of(repository).lifecycles(config, repository, now)


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
    out.lines(viewlines.daemon_lines(daemon))
    for status in statuses:
        out.lines(viewlines.status_lines(status))
    out.lines(f"ATTENTION: {render.shown(reason, 2000)}" for reason in attention)
    return int(code)


def needs_attention(repository: RepositoryConfig, status: dict[str, Any], now: float) -> list[str]:
    """Return why ``status`` needs the operator (empty: all is well)."""
    reasons = [f"problem: {problem}" for problem in status["problems"]]
    for node, entry in sorted(status["nodes"].items()):
        if entry.get("status") not in GOOD:  # a stale node too: it needs a sync (SPEC 5)
            reasons.append(viewlines.node_attention(node, entry))
    if status.get("rotation_blocked_by"):
        reasons.append("rotation blocked by a failed after_rotate hook")
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
    document = dict(info)
    document["started_at"] = _time(info.get("started_at"))
    job = info.get("last_job")
    if isinstance(job, dict):
        document["last_job"] = {
            **job,
            "started_at": _time(job.get("started_at")),
            "ended_at": _time(job.get("ended_at")),
        }
    return document


def _time(value: Any) -> str | None:
    moment = render.epoch(value)
    return None if moment is None else rfc3339(moment)


def cmd_plan(args: argparse.Namespace, config: Config, out: Output) -> int:
    now = time.time()
    plans = [plan_of(config, r, now) for r in chosen(config, args.repo)]
    out.document({"repositories": [plan_json(plan) for plan in plans]})
    for plan in plans:
        out.lines(viewlines.plan_lines(plan))
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
