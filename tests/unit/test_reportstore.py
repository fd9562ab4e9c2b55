"""The report store: hash chain, retention by count and age, and the report commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keysyncd.commands.cli import main
from keysyncd.config import ReportsConfig
from keysyncd.core.report import NodeOutcome, Report, precise_time
from keysyncd.io.reportstore import (
    list_reports,
    new_report_id,
    report_files,
    verify_chain,
    write_report,
)

DAY = 86400.0
NOW = 1_800_000_000.0


def report(started: float, outcome: str = "ok", action: str = "sync") -> Report:
    return Report(
        id=new_report_id(started, action),
        action=action,
        trigger="cli",
        repository="fernet-tokens",
        started_at=started,
        ended_at=started + 1,
        outcome=outcome,
        generation=1,
        expected={"0": "a" * 64, "1": "b" * 64},
        nodes={"node1": NodeOutcome(status="in_sync", digests={"0": "a" * 64}, duration=0.2)},
    )


def test_retention_by_count_keeps_the_chain_verifiable(tmp_path: Path) -> None:
    reports, state = tmp_path / "reports", tmp_path / "state"
    for minute in range(10):
        write_report(reports, state, report(NOW + 60 * minute), ReportsConfig(4, 90), NOW + 600)
    assert len(report_files(reports)) == 4
    assert verify_chain(reports, state) == []


def test_retention_by_age(tmp_path: Path) -> None:
    reports, state = tmp_path / "reports", tmp_path / "state"
    for days_ago in (40, 20, 5, 1):
        write_report(reports, state, report(NOW - days_ago * DAY), ReportsConfig(100, 10), NOW)
    kept = [json.loads(p.read_text())["started_at"] for p in report_files(reports)]
    assert kept == [precise_time(NOW - 5 * DAY), precise_time(NOW - 1 * DAY)]
    assert verify_chain(reports, state) == []


def test_deleting_the_oldest_outside_retention_is_detected(tmp_path: Path) -> None:
    reports, state = tmp_path / "reports", tmp_path / "state"
    for minute in range(3):
        write_report(reports, state, report(NOW + 60 * minute), ReportsConfig(100, 90), NOW)
    oldest = report_files(reports)[0]
    oldest.unlink()
    problems = verify_chain(reports, state)
    assert problems and oldest.stem in problems[0]


def test_editing_the_newest_is_detected(tmp_path: Path) -> None:
    reports, state = tmp_path / "reports", tmp_path / "state"
    for minute in range(3):
        write_report(reports, state, report(NOW + 60 * minute), ReportsConfig(100, 90), NOW)
    newest = report_files(reports)[-1]
    newest.write_text(newest.read_text().replace('"in_sync"', '"failed"'))
    assert verify_chain(reports, state) == [
        f"report {newest.stem} (the newest) was modified after it was written"
    ]


def test_editing_a_report_in_the_middle_of_the_chain_is_detected(tmp_path: Path) -> None:
    reports, state = tmp_path / "reports", tmp_path / "state"
    for minute in range(4):
        write_report(reports, state, report(NOW + 60 * minute), ReportsConfig(100, 90), NOW)
    middle = report_files(reports)[1]
    middle.write_text(middle.read_text().replace('"in_sync"', '"failed"'))
    assert verify_chain(reports, state) == [
        f"report {middle.stem} was modified after it was written"
    ]


def test_report_list_filters_and_show_renders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/state\nreport_dir: {tmp_path}/reports\n"
        f"repositories:\n  - name: fernet-tokens\n    path: {tmp_path}/keys\n"
    )
    retention = ReportsConfig(100, 100000)
    old = report(NOW - 10 * DAY, "failed")
    new = report(NOW, "ok", "rotate")
    for item in (old, new):
        write_report(tmp_path / "reports", tmp_path / "state", item, retention, NOW)
    capsys.readouterr()
    assert main(["-c", str(config), "report", "list", "--outcome", "failed"]) == 0
    out = capsys.readouterr().out
    assert old.id in out and new.id not in out
    assert main(["-c", str(config), "report", "list", "--since", "2027-01-10", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["reports"]
    assert [r["id"] for r in listed] == [new.id]
    assert main(["-c", str(config), "report", "show", new.id[:20]]) == 0
    shown = capsys.readouterr().out
    assert f"report {new.id}" in shown and "node1" in shown and "in_sync" in shown
    assert main(["-c", str(config), "report", "show", new.id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == new.id
    assert main(["-c", str(config), "report", "show", "nope"]) == 2  # usage: no such report


def test_retention_deletes_only_reports(tmp_path: Path) -> None:
    """A report_dir may hold other files (a mistake, or a link planted by someone else):
    only names keysyncd gives reports are ever pruned."""
    report_dir, state_dir = tmp_path / "reports", tmp_path / "state"
    report_dir.mkdir()
    others = ["0-ledger.json", "settings.json", "x.txt"]
    for name in others:
        (report_dir / name).write_text("not a report\n")
    retention = ReportsConfig(keep_count=1, keep_days=1)
    for offset in range(3):
        write_report(report_dir, state_dir, report(NOW + offset), retention, NOW + 10)
    assert sorted(p.name for p in report_dir.iterdir() if p.name in others) == sorted(others)
    assert len(report_files(report_dir)) == 1
    assert verify_chain(report_dir, state_dir) == []


def test_report_list_reads_the_index_not_the_reports(tmp_path: Path) -> None:
    """Listing costs what it prints: with the index in place no report file is opened; a
    report the index lacks (a crash between the two writes) is still listed, from its file."""
    reports, state = tmp_path / "reports", tmp_path / "state"
    retention = ReportsConfig(100, 90)
    written = [report(NOW + 60 * minute) for minute in range(5)]
    for item in written:
        write_report(reports, state, item, retention, NOW)
    for path in report_files(reports):
        path.write_bytes(b"")  # emptied: a read would find no report, only the index answers
    listed = list_reports(reports)
    assert [s["id"] for s in listed] == [item.id for item in written]
    assert {(s["outcome"], s["good"], s["nodes"]) for s in listed} == {("ok", 1, 1)}
    index = reports / "index.jsonl"
    index.write_text("".join(index.read_text().splitlines(keepends=True)[:3]) + '{"id": tru')
    missing = list_reports(reports)
    assert [s["id"] for s in missing] == [item.id for item in written[:3]], (
        "a report the index lacks is read from its file: here an empty one, so it is skipped"
    )


def test_the_index_stays_bounded_by_the_retention(tmp_path: Path) -> None:
    reports, state = tmp_path / "reports", tmp_path / "state"
    retention = ReportsConfig(3, 90)
    for minute in range(120):
        write_report(reports, state, report(NOW + 60 * minute), retention, NOW + 7200)
    lines = (reports / "index.jsonl").read_text().splitlines()
    assert len(lines) <= 2 * retention.keep_count + 101
    assert [s["id"] for s in list_reports(reports)] == [p.stem for p in report_files(reports)]
    assert len(report_files(reports)) == 3
    assert verify_chain(reports, state) == []
