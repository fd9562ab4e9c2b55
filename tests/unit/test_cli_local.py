"""The CLI on a controller without nodes: init, rotate, status, plan, exit codes, secrets."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from keysyncd.commands.cli import main


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/state\n"
        "repositories:\n"
        "  - name: fernet-tokens\n"
        f"    path: {tmp_path}/keys\n"
        "    max_active_keys: 3\n"
        "    token_expiration: 3600\n"
        "    allow_expired_window: 172800\n"
        '    schedule: "0 0 * * *"\n' + extra
    )
    return config


def run(config: Path, *args: str) -> int:
    return main(["-c", str(config), *args])


def test_init_rotate_status_roundtrip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert run(config, "init") == 0
    assert sorted(os.listdir(tmp_path / "keys")) == ["0", "1"]
    assert run(config, "rotate") == 0
    assert sorted(os.listdir(tmp_path / "keys")) == ["0", "1", "2"]
    capsys.readouterr()
    assert run(config, "status", "--json") == 0
    document = json.loads(capsys.readouterr().out)  # --json prints only JSON on stdout
    (status,) = document["repositories"]
    assert status["generation"] == 2
    assert [(k["index"], k["role"]) for k in status["keys"]] == [
        (0, "staged"),
        (1, "secondary"),
        (2, "primary"),
    ]


def test_init_refuses_existing_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert run(config, "init") == 0
    before = {n: (tmp_path / "keys" / n).read_bytes() for n in os.listdir(tmp_path / "keys")}
    capsys.readouterr()
    assert run(config, "init") == 1
    err = capsys.readouterr().err
    assert "refusing to initialise" in err and err.count("\n") == 1
    after = {n: (tmp_path / "keys" / n).read_bytes() for n in os.listdir(tmp_path / "keys")}
    assert after == before


def test_dry_run_touches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    run(config, "init")
    before = sorted(os.listdir(tmp_path / "keys"))
    state_before = (tmp_path / "state" / "repositories" / "fernet-tokens.json").read_bytes()
    capsys.readouterr()
    assert run(config, "rotate", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would promote staged key 0 to primary 2" in out
    assert sorted(os.listdir(tmp_path / "keys")) == before
    assert (tmp_path / "state" / "repositories" / "fernet-tokens.json").read_bytes() == state_before


def test_plan_flags_the_seed_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    run(config, "init")
    capsys.readouterr()
    assert run(config, "plan") == 0
    out = capsys.readouterr().out
    assert "unsafe: max_active_keys 3 is too small" in out
    assert "needs at least 5" in out
    assert "staged" in out and "primary" in out and "retired" in out


def test_plan_is_quiet_when_large_enough(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("max_active_keys: 3", "max_active_keys: 5"))
    run(config, "init")
    capsys.readouterr()
    assert run(config, "plan") == 0
    out = capsys.readouterr().out
    assert "unsafe" not in out and "too small" not in out, out
    assert "staged" in out and "primary" in out, out  # the plan itself is still shown


def test_unknown_repository_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert run(config, "rotate", "--repo", "nope") == 2
    assert "no repository named 'nope'" in capsys.readouterr().err


def test_invalid_repository_gives_one_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    run(config, "init")
    (tmp_path / "keys" / "1").write_bytes(b"")
    capsys.readouterr()
    assert run(config, "rotate") == 1
    err = capsys.readouterr().err
    assert "keys/1: empty key" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_key_material_never_appears_in_output_logs_reports_or_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = write_config(tmp_path)
    outputs = []
    seen: set[str] = set()
    for args in (
        ["init"],
        ["rotate"],
        ["rotate", "--dry-run"],
        ["status"],
        ["status", "--json"],
        ["plan"],
        ["rotate"],
        ["rotate"],
        ["--debug", "status"],
    ):
        run(config, *args)
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
        seen |= {p.read_bytes().strip().decode() for p in (tmp_path / "keys").iterdir()}
    (tmp_path / "keys" / "3").write_bytes(b"x" + (tmp_path / "keys" / "0").read_bytes()[1:])
    run(config, "rotate")  # the error names the bad file, never its content
    captured = capsys.readouterr()
    outputs += [captured.out, captured.err]
    written = [p.read_text() for p in (tmp_path / "state").rglob("*") if p.is_file()]
    secrets = sorted(
        seen | {p.read_bytes().strip().decode() for p in (tmp_path / "keys").iterdir()}
    )
    every_key = secrets + [s[1:] for s in secrets]  # also a key with its first byte changed
    haystack = "\n".join(outputs + written + [r.getMessage() for r in caplog.records])
    assert secrets and all(len(s) >= 43 for s in every_key)
    for secret in every_key:
        assert secret not in haystack


def tree_digests(root: Path) -> dict[str, str]:
    """Return every file below ``root`` with a digest of its content and mode (and links)."""
    import hashlib
    import stat

    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""
        found[str(path.relative_to(root))] = (
            f"{stat.S_IFMT(info.st_mode)}:{info.st_mode:o}:{content}"
        )
    return found


def test_each_repository_runs_on_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two repositories, the first broken: the second still rotates, a summary names both."""
    config = write_config(
        tmp_path,
        "  - name: credential-keys\n"
        "    kind: credential\n"
        f"    path: {tmp_path}/credential-keys\n"
        '    schedule: "0 3 * * 1"\n',
    )
    assert run(config, "init") == 0
    (tmp_path / "keys" / "0").write_bytes(b"")  # fernet-tokens: an empty staged key
    capsys.readouterr()
    assert run(config, "rotate") == 1
    captured = capsys.readouterr()
    assert sorted(os.listdir(tmp_path / "credential-keys")) == ["0", "1", "2"], "rotated"
    assert sorted(os.listdir(tmp_path / "keys")) == ["0", "1"], "the broken one untouched"
    summary = [line for line in captured.out.splitlines() if line.startswith("summary: ")]
    assert summary[0].startswith("summary: fernet-tokens: failed (invalid repository: ")
    assert summary[1] == "summary: credential-keys: ok"
    assert "keysyncd: error: fernet-tokens: invalid repository" in captured.err


def test_dry_run_after_an_interrupted_rotation_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the renames left the write-ahead record, the new primary and a temp
    file: the dry run shows what recovery would do, and touches nothing (trees hashed)."""
    config = write_config(tmp_path)
    assert run(config, "init") == 0
    real_rename = os.rename
    calls = {"n": 0}

    def crash_on_second(source: str, target: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the new primary is in place, 0 is not replaced yet
            raise SystemExit("simulated crash")
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", crash_on_second)
    with pytest.raises(SystemExit):
        run(config, "rotate")
    monkeypatch.undo()
    assert [n for n in os.listdir(tmp_path / "keys") if n.startswith(".keysyncd-")], "temp"
    state = json.loads((tmp_path / "state" / "repositories" / "fernet-tokens.json").read_text())
    assert state["pending"] is not None
    before = tree_digests(tmp_path)
    capsys.readouterr()
    assert run(config, "rotate", "--dry-run") == 0
    out = capsys.readouterr().out
    assert tree_digests(tmp_path) == before, "a dry run writes nothing anywhere"
    assert "would roll back the interrupted rotation: remove key 2" in out
    assert "would remove 1 leftover temp file" in out
    assert "would promote staged key 0 to primary 2" in out
    assert run(config, "rotate") == 0  # the real run recovers, then rotates
    assert sorted(os.listdir(tmp_path / "keys")) == ["0", "1", "2"]
