"""Reports kept in the journal while report_dir cannot take them, written, marked late, by
the first later commit that can (``keysyncd.actions.context.commit``)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from keysyncd.core import journal
from keysyncd.core.clock import ClockCheck
from keysyncd.core.journal import RepositoryState
from keysyncd.core.report import Report
from keysyncd.core.text import plural
from keysyncd.errors import KeysyncError
from keysyncd.io.local.reportstore import write_report

if TYPE_CHECKING:
    from keysyncd.actions.context import Run

# Reports kept in the journal while report_dir cannot take them: beyond these, the oldest
# lose their per-node tables (abridged, marked so), and beyond MAX_UNWRITTEN they are dropped
# (counted in the journal, logged): the state file must stay small enough to write at once.
MAX_UNWRITTEN = 1000
ABRIDGED_MESSAGE = 500  # characters kept of each message of an abridged report
MAX_UNWRITTEN_BYTES = 8 << 20

log = logging.getLogger("keysyncd.actions.context")  # the commit's lines, wherever written


def write_reports(
    run: Run, state: RepositoryState, report: Report, check: ClockCheck
) -> tuple[RepositoryState, Report, str | None]:
    """Write the reports the journal kept (oldest first), then ``report``; return the state
    keeping what was not written, the report as written, and why not (None: all were)."""
    now = report.ended_at
    # only a clock the nodes vouched for in this action ages reports out: a clock a year
    # ahead would make all of them look old (retention by count still applies)
    retention_now = now if check.trusted and check.fresh else None
    config = run.config
    waiting = [dict(document) for document in state.unwritten_reports]
    try:
        while waiting:
            write_report(
                config.report_dir, config.state_dir, waiting[0], config.reports, retention_now, now
            )
            waiting.pop(0)
        path = write_report(
            config.report_dir, config.state_dir, report, config.reports, retention_now
        )
    except KeysyncError as error:
        log.error("%s: %s", run.repository.name, error)
        return kept(state, [*waiting, report.to_json()]), report, str(error)
    return replace(state, unwritten_reports=()), replace(report, id=path.stem), None


def kept(state: RepositoryState, documents: list[dict[str, Any]]) -> RepositoryState:
    """Return ``state`` keeping ``documents`` (oldest first, the oldest abridged then dropped
    past MAX_UNWRITTEN_BYTES or MAX_UNWRITTEN; the newest always kept)."""
    sizes = [len(json.dumps(document)) for document in documents]
    for index, document in enumerate(documents):
        if sum(sizes) <= MAX_UNWRITTEN_BYTES:
            break
        documents[index] = _abridged(document)
        sizes[index] = len(json.dumps(documents[index]))
    dropped = max(len(documents) - MAX_UNWRITTEN, 0)
    while dropped < len(documents) - 1 and sum(sizes[dropped:]) > MAX_UNWRITTEN_BYTES:
        dropped += 1
    for document in documents[:dropped]:
        log.error("%s: report %s dropped: report_dir could not take it", state.name, document["id"])
    if dropped:
        state = journal.counted(state, *["reports:dropped"] * dropped)
    return replace(state, unwritten_reports=tuple(documents[dropped:]))


def _abridged(document: dict[str, Any]) -> dict[str, Any]:
    """Return ``document`` without nodes, digests and details, its messages shortened."""
    note = (
        "abridged while report_dir could not take it: the per-node table, the expected "
        "digests and the details were dropped, the messages shortened, to keep the journal small"
    )
    messages = [str(m)[:ABRIDGED_MESSAGE] for m in list(document.get("messages", []))[:20]]
    return {**document, "nodes": {}, "expected": {}, "details": {}, "messages": [*messages, note]}


def not_written(failure: str, kept: int) -> str:
    """Return what the result says of a report not written (``kept``: those kept now)."""
    earlier = f" with {plural(kept - 1, 'earlier one')}" if kept > 1 else ""
    return (
        f"the report could not be written ({failure}); it is kept in the journal{earlier} "
        "and written, marked late, by the next action that can"
    )
