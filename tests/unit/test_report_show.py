"""``report show`` and ``status`` print what a file on disk says, and a file may have been
edited by an attacker or damaged: every field reaches the terminal escaped, never raw (no
escape sequence, no forged line), and nothing says "status None".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from keysyncd.commands.cli import main
from tests.local_cli import initialised_config

HOSTILE = "evil\x1b[2J\x1b]0;owned\x07\nFORGED LINE\r\u202e"
ESCAPED = "evil\\x1b[2J\\x1b]0;owned\\x07\\nFORGED LINE\\r\\u202e"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return initialised_config(tmp_path)


def the_report(config: Path) -> Path:
    (report,) = sorted((config.parent / "reports").glob("*.json"))
    return report


def assert_clean(output: str) -> None:
    """Only newlines separate lines; no other control character reaches the terminal."""
    for line in output.splitlines():
        assert all(char.isprintable() for char in line), repr(line)
    assert "FORGED LINE" not in [line.strip() for line in output.splitlines()]


def test_every_field_report_show_prints_is_escaped(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = the_report(config)
    document = json.loads(path.read_text())
    document |= {
        "action": HOSTILE,
        "trigger": HOSTILE,
        "repository": HOSTILE,
        "outcome": HOSTILE,
        "generation": HOSTILE,
        "started_at": HOSTILE,
        "ended_at": 1e300,  # out of any calendar: shown as "?", never a crash
        "messages": [HOSTILE],
        "expected": {HOSTILE: HOSTILE},
        "nodes": {
            HOSTILE: {"status": HOSTILE, "duration": HOSTILE, "error": HOSTILE},
            "node2": {"status": "differs", "duration": 1.5, "changes": {"missing": HOSTILE}},
            "node3": HOSTILE,
        },
        "details": {
            "hooks": [
                {"event": HOSTILE, "command": [HOSTILE], "status": None, "output": HOSTILE},
                {"event": "after_rotate", "command": ["migrate"], "status": 3, "output": ""},
            ]
        },
    }
    path.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["-c", str(config), "report", "show", path.stem]) == 0
    out = capsys.readouterr().out
    assert_clean(out)
    assert ESCAPED in out
    assert "status None" not in out
    assert "did not finish" in out and "exited with status 3" in out


def test_status_escapes_the_journal_and_never_says_status_none(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = config.parent / "state" / "repositories" / "fernet-tokens.json"
    document = json.loads(state.read_text())
    document["hook_block"] = {"hook": [HOSTILE], "status": None, "at": 1.0}
    document["nodes"] = {"n1": {"status": HOSTILE, "reason": HOSTILE, "error": HOSTILE}}
    state.write_text(json.dumps(document))
    with_node = yaml.safe_load(config.read_text())
    known_hosts = config.parent / "known_hosts"
    known_hosts.write_text("")
    with_node["ssh"] = {"user": "keystone", "known_hosts": str(known_hosts)}
    with_node["nodes"] = [{"name": "n1", "host": "192.0.2.1"}]
    config.write_text(yaml.safe_dump(with_node))
    capsys.readouterr()
    main(["-c", str(config), "status"])
    out = capsys.readouterr().out
    assert_clean(out)
    assert "status None" not in out and "None:" not in out
    assert "BLOCKED" in out and "did not finish" in out
    assert f"node n1: {ESCAPED}" in out
