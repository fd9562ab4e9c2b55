"""Reports kept in the journal (report_dir could not take them): bounded in bytes, and
only ever written under ids keysyncd gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keysyncd.actions.context import MAX_UNWRITTEN_BYTES, Run, kept
from keysyncd.config import Config, parse_config
from keysyncd.core.journal import RepositoryState
from keysyncd.core.report import Report
from keysyncd.core.vocabulary import Trigger
from keysyncd.errors import LocalFileError
from keysyncd.io.local.reportstore import new_report_id
from keysyncd.io.local.state import load_state, save_state

NOW = 1_800_000_000.0


def make_config(root: Path) -> Config:
    document: dict[str, Any] = {
        "state_dir": str(root / "state"),
        "report_dir": str(root / "reports"),
        "repositories": [{"name": "fernet-tokens", "kind": "fernet", "path": str(root / "keys")}],
        "ssh": {
            "user": "keystone",
            "known_hosts": "/nonexistent/known_hosts",
            "identity_file": "/nonexistent/id_ed25519",
        },
    }
    return parse_config(document, root / "config.yaml")


def run_of(config: Config, now: float) -> Run:
    return Run(config, config.repositories[0], Trigger.CLI, clock=lambda: now)


def kept_report(started: float, action: str = "rotate", **extra: Any) -> dict[str, Any]:
    document = Report(
        id=new_report_id(started, action),
        action=action,
        trigger="daemon",
        repository="fernet-tokens",
        started_at=started,
        ended_at=started + 1,
        outcome="ok",
        generation=3,
    ).to_json()
    return {**document, **extra}


def test_the_unwritten_reports_are_bounded_in_bytes() -> None:
    """1000 kept reports carrying a rotation's hook output (~40 KB each) stay within
    MAX_UNWRITTEN_BYTES: messages and details are abridged too, then the oldest dropped (a
    journal past read_trusted's limit would stop the repository)."""
    hooks = {"hooks": [{"stdout": "\x01" * 4096 + "\x02" * 4096}]}  # control bytes: 6x in JSON
    documents = [kept_report(NOW + i, details=hooks) for i in range(1000)]
    state = kept(RepositoryState(name="fernet-tokens"), documents)
    size = sum(len(json.dumps(d)) for d in state.unwritten_reports)
    assert size <= MAX_UNWRITTEN_BYTES, f"{size} bytes kept in the journal"


@pytest.mark.parametrize("report_id", ["../escaped", "kept-report", "20270101T000000000000Z"])
def test_a_kept_report_id_that_is_no_report_id_is_a_damaged_journal(
    tmp_path: Path, report_id: str
) -> None:
    """The id of a report kept in the journal becomes a file name in report_dir: an id that is
    not one keysyncd gives ('../escaped' would be written beside report_dir as root; an odd
    name would become a chain head verify-chain cannot find) is a damaged state file, named
    with its field, and nothing is written anywhere."""
    config = make_config(tmp_path)
    hostile = kept_report(NOW, id=report_id)
    save_state(
        config.state_dir, RepositoryState(name="fernet-tokens", unwritten_reports=(hostile,))
    )
    with pytest.raises(LocalFileError, match=r"'unwritten_reports\[0\]\.id' is no report id"):
        load_state(config.state_dir, "fernet-tokens")
    assert not (tmp_path / "escaped.json").exists()
    assert not config.report_dir.exists() or not any(config.report_dir.iterdir())
