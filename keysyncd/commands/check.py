"""check-config: print the findings on stderr, the verdict on stdout; errors exit 2, warnings
0 (1 with ``--strict``)."""

from __future__ import annotations

import argparse
import time

from keysyncd.actions.checkconfig import ERROR, config_findings
from keysyncd.commands.exits import Exit
from keysyncd.commands.output import Output
from keysyncd.config import Config
from keysyncd.core.text import plural


def cmd_check_config(args: argparse.Namespace, config: Config, out: Output) -> int:
    findings = config_findings(config, time.time())
    errors = [f for f in findings if f.severity == ERROR]
    warnings = [f for f in findings if f.severity != ERROR]
    code = Exit.USAGE if errors else Exit.ATTENTION if warnings and args.strict else Exit.DONE
    for finding in errors:
        out.error(finding.message)
    for finding in warnings:
        out.warning(finding.message)
    out.document(
        {
            "config": str(config.source),
            "ok": code == Exit.DONE,
            "exit_code": code,
            "repositories": len(config.repositories),
            "nodes": len(config.nodes),
            "findings": [finding.to_json() for finding in findings],
        }
    )
    if code == Exit.DONE:
        noted = f", {plural(len(warnings), 'warning')}" if warnings else ""
        repositories = plural(len(config.repositories), "repository")
        out.lines(
            [f"OK: {config.source}: {repositories}, {plural(len(config.nodes), 'node')}{noted}"]
        )
    elif code == Exit.ATTENTION:
        out.error(f"{plural(len(warnings), 'warning')}, and --strict", prefix="check-config")
    return int(code)
