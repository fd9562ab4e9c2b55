"""The report chain: each report records the id and SHA-256 of the one before, and the state
directory keeps the newest one's hash (the head), so editing or deleting any report breaks
the chain and ``verify_chain`` names it; the head remembers the last report pruned."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

from keysyncd.core.keyring import digest_of
from keysyncd.errors import LocalFileError
from keysyncd.io.local.fsutil import load_json
from keysyncd.io.local.trust import read_trusted

HEAD_FILE = "reports-head.json"
MAX_BREAKS = 20  # damaged heads remembered in the head itself, newest last
REPORT_NAME = re.compile(r"[0-9]{8}T[0-9]{12}Z-[a-z-]+-[0-9a-f]{6}\.json")


def report_files(report_dir: Path) -> list[Path]:
    """Return the report files, oldest first; only keysyncd names (retention deletes no other)."""
    try:
        names = sorted(n for n in os.listdir(report_dir) if REPORT_NAME.fullmatch(n))
    except FileNotFoundError:
        return []
    return [report_dir / name for name in names]


def _link(value: Any) -> dict[str, str] | None:
    """Return ``{"id": ..., "sha256": ...}`` if ``value`` is a chain link, else None."""
    if (
        isinstance(value, dict)
        and isinstance(value.get("id"), str)
        and isinstance(value.get("sha256"), str)
    ):
        return {"id": value["id"], "sha256": value["sha256"]}
    return None


def read_head(state_dir: Path) -> tuple[dict[str, Any], str | None]:
    """Return the chain head and what is wrong with the head file, if damaged (never blocking an
    action: the new head records it); raise LocalFileError if it is unsafe."""
    path = state_dir / HEAD_FILE
    content = read_trusted(path, limit=1 << 20)
    if content is None:
        return {}, None
    try:
        document = load_json(content)
    except (ValueError, UnicodeDecodeError):
        return {}, f"{path} is not valid JSON"
    if not isinstance(document, dict):
        return {}, f"{path} is not a JSON object"
    head: dict[str, Any] = {}
    if document.get("head") is not None:
        head["head"] = _link(document["head"])
        if head["head"] is None:
            return {}, f"{path}: 'head' is not a report link"
    pruned = document.get("pruned_through")
    if pruned is not None and not isinstance(pruned, str):
        return {}, f"{path}: 'pruned_through' is not a report id"
    if pruned:
        head["pruned_through"] = pruned
    breaks = document.get("breaks", [])
    if isinstance(breaks, list) and all(isinstance(b, str) for b in breaks):
        head["breaks"] = breaks[-MAX_BREAKS:]
    indexed = document.get("indexed")  # lines in the summary index (see _index)
    if isinstance(indexed, int) and not isinstance(indexed, bool) and indexed >= 0:
        head["indexed"] = indexed
    return head, None


def recovered_head(report_dir: Path, state_dir: Path, writing: str | None = None) -> dict[str, Any]:
    """Return the chain head, adopting a newest report whose ``previous`` is the recorded head (its
    writer was killed before recording it). When ``writing`` a report and the head file is damaged,
    the chain continues from the newest report and the damage is noted in ``breaks``."""
    head, damage = read_head(state_dir)
    files = report_files(report_dir)
    if damage is not None and writing is not None:
        head = {"breaks": [f"before report {writing}: {damage}"]}
        if files:
            content = read_report_bytes(files[-1])
            head["head"] = {"id": files[-1].stem, "sha256": digest_of(content)}
        return head
    recorded = head.get("head")
    if not files or not recorded or files[-1].stem == recorded["id"]:
        return head
    content = read_report_bytes(files[-1])
    with contextlib.suppress(ValueError, AttributeError, UnicodeDecodeError):
        if load_json(content).get("previous") == recorded:
            head["head"] = {"id": files[-1].stem, "sha256": digest_of(content)}
    return head


def read_report_bytes(path: Path) -> bytes:
    """Return a report file's bytes; raise LocalFileError if it is unsafe or unreadable."""
    content = read_trusted(path)
    if content is None:
        raise LocalFileError(f"report {path} vanished while it was read")
    return content


def verify_chain(report_dir: Path, state_dir: Path) -> list[str]:
    """Return every break in the report chain, each naming the report concerned (empty: intact)."""
    return inspect_chain(report_dir, state_dir)[0]


def inspect_chain(report_dir: Path, state_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Return every break in the report chain and the reports written late (id ->
    ``written_late_at``: kept in the journal meanwhile, a gap the chain records, not a break)."""
    late: dict[str, str] = {}
    head, damage = read_head(state_dir)
    problems: list[str] = [f"the chain head is damaged: {damage}"] if damage else []
    problems += [f"the chain head was damaged {note}" for note in head.get("breaks", [])]
    if damage is None:
        head = recovered_head(report_dir, state_dir)
    previous: dict[str, str] | None = None
    pruned = head.get("pruned_through") or ""
    # reports up to pruned_through were due for deletion (a crash may have left some)
    files = [path for path in report_files(report_dir) if path.stem > pruned]
    for index, path in enumerate(files):
        content = read_report_bytes(path)
        try:
            document = load_json(content)
            recorded = _link(document.get("previous"))
            if isinstance(document.get("written_late_at"), str):
                late[path.stem] = document["written_late_at"]
        except (ValueError, UnicodeDecodeError, AttributeError):
            problems.append(f"report {path.stem} is not a valid report: it was modified")
            recorded = None
        problems += _link_breaks(path.stem, recorded, previous if index else None, pruned, index)
        previous = {"id": path.stem, "sha256": digest_of(content)}
    return problems + _newest_breaks(head.get("head"), previous), late


def _link_breaks(
    name: str,
    recorded: dict[str, str] | None,
    previous: dict[str, str] | None,
    pruned: str,
    index: int,
) -> list[str]:
    """Return what is wrong with report ``name``'s link (``recorded``) to the report before
    it (``previous``; for the oldest, ``index`` 0, the last one pruned)."""
    if index == 0:
        if recorded and recorded.get("id") != (pruned or None):
            return [
                f"report {recorded.get('id')} (before {name}) is missing: deleted outside retention"
            ]
        return []
    if recorded is None or previous is None or recorded.get("id") != previous["id"]:
        expected = previous["id"] if previous else "?"
        claimed = recorded.get("id") if recorded else None
        return [
            f"report {claimed or '?'} (before {name}) is missing or the "
            f"chain was rewritten (found {expected} instead)"
        ]
    if recorded.get("sha256") != previous["sha256"]:
        return [f"report {previous['id']} was modified after it was written"]
    return []


def _newest_breaks(last: dict[str, str] | None, previous: dict[str, str] | None) -> list[str]:
    """Return what is wrong with the head's newest report ``last``, given the newest found."""
    if last and previous is None:
        return [f"report {last['id']} is missing: every report was deleted"]
    if last and previous and last["id"] != previous["id"]:
        return [f"report {last['id']} (the newest) is missing"]
    if last and previous and last["sha256"] != previous["sha256"]:
        return [f"report {last['id']} (the newest) was modified after it was written"]
    return []
