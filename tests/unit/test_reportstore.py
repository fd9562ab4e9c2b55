"""The report store: hash chain, retention by count and age, and the report commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keysyncd.commands.cli import main
from keysyncd.config import ReportsConfig
from keysyncd.core.report import NodeOutcome, Report, precise_time
from keysyncd.io.local.reportchain import inspect_chain, report_files, verify_chain
from keysyncd.io.local.reportstore import (
    KEPT_WHATEVER_THEIR_AGE,
    list_reports,
    new_report_id,
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


def verify_chain_command(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``report verify-chain`` over the reports and state under ``root``; return (exit
    code, stdout)."""
    config = root / "config.yaml"
    config.write_text(
        f"state_dir: {root / 'state'}\nreport_dir: {root / 'reports'}\n"
        f"repositories:\n  - name: fernet-tokens\n    path: {root}/keys\n"
    )
    capsys.readouterr()
    code = main(["-c", str(config), "report", "verify-chain"])
    return code, capsys.readouterr().out


def test_retention_by_count_keeps_the_chain_verifiable(tmp_path: Path) -> None:
    reports, state = tmp_path / "reports", tmp_path / "state"
    for minute in range(10):
        write_report(reports, state, report(NOW + 60 * minute), ReportsConfig(4, 90), NOW + 600)
    assert len(report_files(reports)) == 4
    assert verify_chain(reports, state) == []


def test_retention_by_age(tmp_path: Path) -> None:
    reports, state = tmp_path / "reports", tmp_path / "state"
    recent = [NOW - 5 * DAY + hour * 3600 for hour in range(KEPT_WHATEVER_THEIR_AGE)]
    for started in (NOW - 40 * DAY, NOW - 20 * DAY, *recent):
        write_report(reports, state, report(started), ReportsConfig(100, 10), NOW)
    kept = [json.loads(p.read_text())["started_at"] for p in report_files(reports)]
    assert kept == [precise_time(started) for started in recent]
    assert verify_chain(reports, state) == []


def test_retention_by_age_never_removes_the_newest_reports(tmp_path: Path) -> None:
    """A controller idle for longer than keep_days keeps its last reports."""
    reports, state = tmp_path / "reports", tmp_path / "state"
    for days_ago in (40, 30, 20):
        write_report(reports, state, report(NOW - days_ago * DAY), ReportsConfig(100, 10), NOW)
    assert len(report_files(reports)) == 3
    assert verify_chain(reports, state) == []


def test_a_forward_clock_jump_does_not_delete_the_newest_reports(tmp_path: Path) -> None:
    """A clock a year ahead makes every report look old: by age, retention still keeps the
    newest ones, and none at all while the clock is not trusted (``now`` None)."""
    reports, state = tmp_path / "reports", tmp_path / "state"
    retention = ReportsConfig(keep_count=100, keep_days=90)
    written = [report(NOW + 60 * minute) for minute in range(15)]
    for item in written:
        write_report(reports, state, item, retention, NOW + 900)
    jumped = NOW + 365 * DAY
    write_report(reports, state, report(jumped), retention, None)  # untrusted: count only
    assert len(report_files(reports)) == 16
    write_report(reports, state, report(jumped + 60), retention, jumped + 60)  # trusted
    kept = [p.stem for p in report_files(reports)]
    assert len(kept) == KEPT_WHATEVER_THEIR_AGE
    assert kept[:-2] == [item.id for item in written[-(KEPT_WHATEVER_THEIR_AGE - 2) :]]
    assert verify_chain(reports, state) == []


def test_a_clock_step_back_keeps_the_order_the_chain_and_the_newest_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ids start with the start time, so a clock stepped back a day would sort the newest
    reports first: retention by count would delete them and verify-chain would claim the
    chain was rewritten. Ids sort in the order reports were written instead."""
    reports, state = tmp_path / "reports", tmp_path / "state"
    retention = ReportsConfig(keep_count=3, keep_days=90)
    before = [report(NOW + 60 * minute) for minute in range(3)]
    stepped = [report(NOW - DAY + 60 * minute) for minute in range(2)]
    paths = [write_report(reports, state, item, retention, NOW) for item in (*before, *stepped)]
    assert [p.stem for p in report_files(reports)] == [p.stem for p in paths[-3:]]
    for path, item in zip(paths[-2:], stepped, strict=True):
        document = json.loads(path.read_text())
        assert path.stem == document["id"] != item.id  # it sorts after the newest report
        assert path.stem.endswith(item.id.split("-", 1)[1])  # same action and suffix
        assert document["started_at"] == precise_time(item.started_at)  # the truth stays
    assert verify_chain(reports, state) == []
    code, out = verify_chain_command(tmp_path, capsys)
    assert code == 0
    assert "chain of 3 reports: intact" in out


def test_a_report_written_late_is_chained_where_it_was_written_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports, state = tmp_path / "reports", tmp_path / "state"
    retention = ReportsConfig(100, 90)
    late = report(NOW, action="rotate")
    write_report(reports, state, report(NOW + 60), retention, NOW + 60)
    path = write_report(reports, state, late.to_json(), retention, NOW + 120, NOW + 120)
    document = json.loads(path.read_text())
    assert document["written_late_at"] == precise_time(NOW + 120)
    assert document["started_at"] == precise_time(NOW)
    assert report_files(reports)[-1] == path
    assert inspect_chain(reports, state) == ([], {path.stem: precise_time(NOW + 120)})
    code, out = verify_chain_command(tmp_path, capsys)
    assert code == 0
    assert f"LATE: report {path.stem} was written at {precise_time(NOW + 120)}" in out
    assert "chain of 2 reports: intact, 1 written late" in out


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
