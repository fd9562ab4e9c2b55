"""Hooks on a kind jws repository are accepted by the config: they run (the action shell,
keysyncd/actions/shell.py; tests/integration/test_jws_hooks.py), so they are no longer
refused as hooks that would be silently ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from keysyncd.config import load_config


@pytest.mark.parametrize("event", ["before_rotate", "after_rotate", "on_failure"])
def test_jws_hooks_are_accepted(tmp_path: Path, event: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/state\n"
        "repositories:\n"
        "  - name: jws\n"
        "    kind: jws\n"
        f"    path: {tmp_path}/jws\n"
        "    hooks:\n"
        "      timeout: 10\n"
        f"      {event}: [['/usr/local/bin/hook', 'now']]\n"
    )
    config.chmod(0o600)
    [repository] = load_config(config).repositories
    assert getattr(repository.hooks, event) == (("/usr/local/bin/hook", "now"),)
