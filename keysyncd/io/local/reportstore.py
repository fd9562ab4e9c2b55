"""The report directory: atomic writes chained to the previous report (``reportchain``),
retention, reading back. Report ids sort in write order whatever the clock did (an id
never sorts before the newest report; ``started_at`` keeps the truth). ``report list``
reads a summary index (``index.jsonl``), a cache and never evidence: a report it lacks is
read from its file, and ``verify_chain`` never looks at it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from keysyncd.config import ReportsConfig
from keysyncd.core.keyring import digest_of
from keysyncd.core.report import Report, precise_time
from keysyncd.core.vocabulary import GOOD
from keysyncd.errors import KeysyncError, LocalFileError, UsageError
from keysyncd.io.local.fsutil import atomic_write, describe_os_error, load_json, remove_temp_files
from keysyncd.io.local.reportchain import (
    HEAD_FILE,
    read_report_bytes,
    recovered_head,
    report_files,
)
from keysyncd.io.local.trust import check_directory, open_trusted, read_trusted

log = logging.getLogger(__name__)

INDEX_FILE = "index.jsonl"
MAX_INDEX = 64 << 20  # a larger index is ignored (every report is then read instead)
# Retention by age never removes this many newest reports: a clock jumped forward would
# otherwise make every report look old (retention by count still removes them in turn).
KEPT_WHATEVER_THEIR_AGE = 10
SUMMARY_FIELDS = (
    "id",
    "schema_version",
    "action",
    "trigger",
    "repository",
    "outcome",
    "started_at",
    "ended_at",
)


@contextlib.contextmanager
def _chain_lock(report_dir: Path) -> Iterator[None]:
    # Reports come from the daemon and from read-only CLI commands that do not take the
    # action lock, so the chain has its own small lock (never opened through a symlink).
    descriptor = open_trusted(report_dir / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


STAMP = "%Y%m%dT%H%M%S%fZ"


def new_report_id(started_at: float, action: str) -> str:
    """Return a sortable unique id like ``20261122T203000123456Z-rotate-1a2b3c``."""
    stamp = datetime.fromtimestamp(started_at, UTC).strftime(STAMP)
    return f"{stamp}-{action}-{os.urandom(3).hex()}"


def _in_order(report_id: str, newest: str | None) -> str:
    """Return ``report_id``, or the same id starting 1 µs after ``newest`` if it would not
    sort after it (the clock stepped back, or the report is written late)."""
    if newest is None or report_id > newest:
        return report_id
    rest = report_id.partition("-")[2]
    try:
        after = datetime.strptime(newest.split("-", 1)[0], STAMP) + timedelta(microseconds=1)
    except ValueError:  # not a name keysyncd gives (REPORT_NAME allows month 99)
        return report_id
    return f"{after.strftime(STAMP)}-{rest}"


def write_report(
    report_dir: Path,
    state_dir: Path,
    report: Report | Mapping[str, Any],
    retention: ReportsConfig,
    now: float | None,
    written_late_at: float | None = None,
) -> Path:
    """Write ``report`` (a Report, or its JSON) chained to its predecessor, prune old reports (by
    age too, unless ``now`` is None: the clock is untrusted); return its path, named by its final id
    (``written_late_at``: written after its action ended). Raise KeysyncError if it cannot be
    written; past that, failures are only logged."""
    document = report.to_json() if isinstance(report, Report) else dict(report)
    path = report_dir / f"{document['id']}.json"
    try:
        report_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_directory(report_dir, "report_dir")
        check_directory(state_dir, "state_dir")
        with _chain_lock(report_dir):
            remove_temp_files(report_dir)
            files = report_files(report_dir)
            document["id"] = _in_order(document["id"], files[-1].stem if files else None)
            path = report_dir / f"{document['id']}.json"
            head = recovered_head(report_dir, state_dir, document["id"])
            document["previous"] = head.get("head")
            if written_late_at is not None:
                document["written_late_at"] = precise_time(written_late_at)
            content = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
            atomic_write(path, content, mode=0o640)
            _chain(report_dir, state_dir, document, content, head, retention, now)
    except OSError as error:
        raise KeysyncError(f"cannot write report {path}: {describe_os_error(error)}") from None
    return path


def _chain(
    report_dir: Path,
    state_dir: Path,
    document: dict[str, Any],
    content: bytes,
    head: dict[str, Any],
    retention: ReportsConfig,
    now: float | None,
) -> None:
    """Record the report just written as the chain head, index it and prune old reports."""
    head["head"] = {"id": document["id"], "sha256": digest_of(content)}
    doomed = _expired(report_dir, retention, now)
    if doomed:
        head["pruned_through"] = doomed[-1].stem
    try:
        head["indexed"] = _index(report_dir, summary(document), head, retention)
    except OSError:  # a cache: a report it lacks is read from its file; rebuilt next time
        head.pop("indexed", None)
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # the head is recorded before anything is pruned: a crash in between leaves
        # reports that verify_chain already treats as pruned
        atomic_write(state_dir / HEAD_FILE, json.dumps(head).encode())
    except OSError as error:
        log.warning(
            "report %s written, its chain head not recorded (%s): the next writer adopts it",
            document["id"],
            describe_os_error(error),
        )
        return
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def summary(document: dict[str, Any]) -> dict[str, Any]:
    """Return what ``report list`` shows of a report: its identity, outcome and node counts."""
    nodes = document.get("nodes")
    nodes = nodes if isinstance(nodes, dict) else {}
    good = sum(1 for n in nodes.values() if isinstance(n, dict) and n.get("status") in GOOD)
    found = {key: document.get(key) for key in SUMMARY_FIELDS}
    return found | {"forced": bool(document.get("forced")), "nodes": len(nodes), "good": good}


def _index(
    report_dir: Path, line: dict[str, Any], head: dict[str, Any], retention: ReportsConfig
) -> int:
    """Append ``line`` to the summary index; return how many lines it holds. Pruned reports' lines
    are dropped only when it grew to twice the retention (rewritten then): appending stays O(1)."""
    index = report_dir / INDEX_FILE
    count = head.get("indexed")
    count = count + 1 if isinstance(count, int) and count >= 0 else None
    if count is None or count > 2 * retention.keep_count + 100:
        kept = {p.stem for p in report_files(report_dir)}
        lines = [s for s in _summaries(report_dir).values() if s.get("id") in kept]
        lines.append(line)
        text = "".join(json.dumps(s, sort_keys=True) + "\n" for s in lines)
        atomic_write(index, text.encode(), mode=0o640)
        return len(lines)
    descriptor = open_trusted(index, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.fchmod(descriptor, 0o640)
        os.write(descriptor, (json.dumps(line, sort_keys=True) + "\n").encode())
    finally:
        os.close(descriptor)
    return count


def _summaries(report_dir: Path) -> dict[str, dict[str, Any]]:
    """Return report id -> summary from the index (the last usable line of an id wins)."""
    found: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(KeysyncError, OSError):
        content = read_trusted(report_dir / INDEX_FILE, limit=MAX_INDEX) or b""
        for raw in content.splitlines():
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                line = load_json(raw)
                if isinstance(line, dict) and isinstance(line.get("id"), str):
                    found[line["id"]] = line
    return found


def _expired(report_dir: Path, retention: ReportsConfig, now: float | None) -> list[Path]:
    """Return the reports beyond the retention, oldest first: beyond keep_count, then older than
    keep_days at ``now`` (None: none by age), never the KEPT_WHATEVER_THEIR_AGE newest."""
    files = report_files(report_dir)
    doomed = files[: max(len(files) - retention.keep_count, 0)]
    if now is None:
        return doomed
    cutoff = now - retention.keep_days * 86400
    for path in files[len(doomed) : max(len(files) - KEPT_WHATEVER_THEIR_AGE, 0)]:
        if _stamp(path.stem) >= cutoff:
            break
        doomed.append(path)
    return doomed


def _stamp(report_id: str) -> float:
    try:
        when = datetime.strptime(report_id.split("-", 1)[0], STAMP)
    except ValueError:
        return 0.0
    return when.replace(tzinfo=UTC).timestamp()


def load_report(report_dir: Path, report_id: str) -> dict[str, Any]:
    """Return report ``report_id`` (or a unique prefix); raise UsageError unless one matches."""
    matches = [p for p in report_files(report_dir) if p.stem.startswith(report_id)]
    if len(matches) != 1:
        found = "no report" if not matches else f"{len(matches)} reports"
        hint = "'keysyncd report list' shows them" if not matches else "give more of the id"
        raise UsageError(f"{found} with id {report_id!r} in {report_dir}: {hint}")
    try:
        document = load_json(read_report_bytes(matches[0]))
    except (ValueError, UnicodeDecodeError) as error:
        raise LocalFileError(f"damaged report {matches[0]}: {error}") from None
    if not isinstance(document, dict):
        raise LocalFileError(f"damaged report {matches[0]}: not a JSON object")
    return document


def list_reports(report_dir: Path, since: float | None = None) -> list[dict[str, Any]]:
    """Return every report's summary, oldest first (with ``since``: started since then, by file
    name); one the index lacks is read from its file, skipped if unreadable."""
    indexed = _summaries(report_dir)
    found = []
    for path in report_files(report_dir):
        if since is not None and _stamp(path.stem) < since:
            continue
        line = indexed.get(path.stem)
        if line is None:
            with contextlib.suppress(KeysyncError, ValueError, UnicodeDecodeError):
                document = load_json(read_report_bytes(path))
                if isinstance(document, dict):
                    line = summary(document)
        if line is not None:
            found.append(line | {"id": path.stem})  # the file's name is the id
    return found
