"""The report directory: atomic writes, a tamper-evident hash chain, retention, reading back.

Each report records the id and SHA-256 of the report written before it, and the
state directory keeps the newest report's hash (the head), so editing or deleting
any report, including the newest, breaks the chain and ``verify_chain`` names it.
Retention prunes the oldest reports and remembers the last one it pruned.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keysyncd.config import ReportsConfig
from keysyncd.errors import KeysyncError
from keysyncd.fsutil import atomic_write, describe_os_error, remove_temp_files
from keysyncd.report import Report

HEAD_FILE = "reports-head.json"


@contextlib.contextmanager
def _chain_lock(report_dir: Path) -> Iterator[None]:
    # Reports come from the daemon and from read-only CLI commands that do not take the
    # action lock, so the chain has its own small lock.
    descriptor = os.open(report_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def report_files(report_dir: Path) -> list[Path]:
    """Return the report files, oldest first (ids sort by time)."""
    try:
        names = sorted(n for n in os.listdir(report_dir) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    return [report_dir / name for name in names]


def _head(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / HEAD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_report(
    report_dir: Path, state_dir: Path, report: Report, retention: ReportsConfig, now: float
) -> Path:
    """Write ``report`` chained to its predecessor, prune old reports; return its path.

    Raise KeysyncError if it cannot be written.
    """
    path = report_dir / f"{report.id}.json"
    try:
        report_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _chain_lock(report_dir):
            remove_temp_files(report_dir)
            head = _recovered_head(report_dir, state_dir)
            document = report.to_json()
            document["previous"] = head.get("head")
            content = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
            atomic_write(path, content, mode=0o640)
            head["head"] = {"id": report.id, "sha256": hashlib.sha256(content).hexdigest()}
            doomed = _expired(report_dir, retention, now)
            if doomed:
                head["pruned_through"] = doomed[-1].stem
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # the head is recorded before anything is pruned: a crash in between leaves
            # reports that verify_chain already treats as pruned
            atomic_write(state_dir / HEAD_FILE, json.dumps(head).encode())
            for path in doomed:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    except OSError as error:
        raise KeysyncError(f"cannot write report {path}: {describe_os_error(error)}") from None
    return path


def _recovered_head(report_dir: Path, state_dir: Path) -> dict[str, Any]:
    """Return the chain head, adopting a newest report written just before a crash.

    A writer killed between writing a report and recording it as the head leaves a
    report whose ``previous`` is the recorded head: it is the legitimate new head.
    """
    head = _head(state_dir)
    files = report_files(report_dir)
    recorded = head.get("head")
    if not files or not recorded or files[-1].stem == recorded["id"]:
        return head
    content = files[-1].read_bytes()
    with contextlib.suppress(ValueError, AttributeError):
        if json.loads(content).get("previous") == recorded:
            head["head"] = {"id": files[-1].stem, "sha256": hashlib.sha256(content).hexdigest()}
    return head


def _expired(report_dir: Path, retention: ReportsConfig, now: float) -> list[Path]:
    """Return the reports beyond the retention, oldest first."""
    files = report_files(report_dir)
    cutoff = now - retention.keep_days * 86400
    doomed = files[: max(len(files) - retention.keep_count, 0)]
    for path in files[len(doomed) :]:
        if _stamp(path.stem) >= cutoff:
            break
        doomed.append(path)
    return doomed


def _stamp(report_id: str) -> float:
    try:
        when = datetime.strptime(report_id.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ")
    except ValueError:
        return 0.0
    return when.replace(tzinfo=UTC).timestamp()


def load_report(report_dir: Path, report_id: str) -> dict[str, Any]:
    """Return report ``report_id`` (a unique prefix is enough); raise KeysyncError if none."""
    matches = [p for p in report_files(report_dir) if p.stem.startswith(report_id)]
    if len(matches) != 1:
        found = "no report" if not matches else f"{len(matches)} reports"
        raise KeysyncError(f"{found} with id {report_id!r} in {report_dir}")
    try:
        return json.loads(matches[0].read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise KeysyncError(f"cannot read report {matches[0]}: {error}") from None


def load_reports(report_dir: Path) -> list[dict[str, Any]]:
    """Return every readable report, oldest first (unreadable ones are skipped)."""
    documents = []
    for path in report_files(report_dir):
        with contextlib.suppress(OSError, ValueError):
            documents.append(json.loads(path.read_text(encoding="utf-8")))
    return documents


def verify_chain(report_dir: Path, state_dir: Path) -> list[str]:
    """Return every break in the report chain, each naming the report concerned (empty: intact)."""
    problems: list[str] = []
    head = _recovered_head(report_dir, state_dir)
    previous: dict[str, str] | None = None
    pruned = head.get("pruned_through") or ""
    # reports up to pruned_through were due for deletion (a crash may have left some)
    files = [path for path in report_files(report_dir) if path.stem > pruned]
    for index, path in enumerate(files):
        content = path.read_bytes()
        try:
            recorded = json.loads(content).get("previous")
        except ValueError:
            problems.append(f"report {path.stem} is not valid JSON: it was modified")
            recorded = None
        if index == 0:
            if recorded and recorded.get("id") != (pruned or None):
                problems.append(
                    f"report {recorded.get('id')} (before {path.stem}) is missing: "
                    "deleted outside retention"
                )
        elif recorded is None or previous is None or recorded.get("id") != previous["id"]:
            expected = previous["id"] if previous else "?"
            claimed = recorded.get("id") if recorded else None
            problems.append(
                f"report {claimed or '?'} (before {path.stem}) is missing or the "
                f"chain was rewritten (found {expected} instead)"
            )
        elif recorded.get("sha256") != previous["sha256"]:
            problems.append(f"report {previous['id']} was modified after it was written")
        previous = {"id": path.stem, "sha256": hashlib.sha256(content).hexdigest()}
    last = head.get("head")
    if last and previous is None:
        problems.append(f"report {last['id']} is missing: every report was deleted")
    elif last and previous and last["id"] != previous["id"]:
        problems.append(f"report {last['id']} (the newest) is missing")
    elif last and previous and last["sha256"] != previous["sha256"]:
        problems.append(f"report {last['id']} (the newest) was modified after it was written")
    return problems
