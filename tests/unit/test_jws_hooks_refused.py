"""Hooks on a kind jws repository are refused by the config (exit 2), never accepted and then
silently not run: a before_rotate that exits 1 would not stop a JWS rotation, after_rotate
would leave no block and on_failure would page nobody (the JWS action runs no hooks yet)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keysyncd.commands.cli import main


@pytest.mark.parametrize("event", ["before_rotate", "after_rotate", "on_failure"])
def test_jws_hooks_are_refused_not_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], event: str
) -> None:
    log = tmp_path / "hooks.log"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/state\n"
        "repositories:\n"
        "  - name: jws\n"
        "    kind: jws\n"
        f"    path: {tmp_path}/jws\n"
        "    hooks:\n"
        "      timeout: 10\n"
        f"      {event}: [['sh', '-c', 'echo ran >> {log}']]\n"
    )
    config.chmod(0o600)
    for command in ("check-config", "init", "rotate"):
        assert main(["-c", str(config), command]) == 2
    err = capsys.readouterr().err
    assert (
        "At 'repositories[0].hooks': hooks do not run for kind jws yet: remove them "
        "(keysyncd would ignore them)" in err
    )
    assert not log.exists()
    assert not (tmp_path / "jws").exists(), "nothing was initialised"
