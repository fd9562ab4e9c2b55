"""report list, show and verify-chain: read the audit reports (no lock, no SSH)."""

from __future__ import annotations

import argparse

from keysyncd.commands import render
from keysyncd.commands.exits import Exit
from keysyncd.commands.output import Output
from keysyncd.config import Config
from keysyncd.io.local.reportchain import inspect_chain, report_files
from keysyncd.io.local.reportstore import list_reports, load_report


def cmd_report(args: argparse.Namespace, config: Config, out: Output) -> int:
    if args.report_command == "verify-chain":
        return _verify_chain(config, out)
    if args.report_command == "show":
        document = load_report(config.report_dir, args.id)
        out.document(document)
        out.lines(render.report_lines(document))
        return int(Exit.DONE)
    summaries = [
        summary
        for summary in list_reports(config.report_dir, since=args.since)
        if (args.outcome is None or summary.get("outcome") == args.outcome)
        and (args.repo is None or summary.get("repository") == args.repo)
    ]
    out.document({"reports": summaries})  # 'report show ID' gives a whole report
    out.lines(render.report_list_lines(summaries))
    return int(Exit.DONE)


def _verify_chain(config: Config, out: Output) -> int:
    problems, late = inspect_chain(config.report_dir, config.state_dir)
    count = len(report_files(config.report_dir))
    code = Exit.ATTENTION if problems else Exit.DONE
    out.document({"intact": not problems, "reports": count, "problems": problems, "late": late})
    # a problem names report files, whose names anyone who could write there chose
    out.lines(f"BROKEN: {render.shown(problem, 2000)}" for problem in problems)
    out.lines(
        f"LATE: report {render.shown(report_id)} was written at {render.shown(written)}, after "
        "its action ended: report_dir could not take it then (it was kept in the journal)"
        for report_id, written in sorted(late.items())
    )
    written_late = f", {len(late)} written late" if late else ""
    out.lines([f"chain of {count} reports: " + ("broken" if problems else "intact") + written_late])
    return int(code)
