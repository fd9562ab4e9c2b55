"""A repository whose directory vanished after keysyncd had keys in it (moved away, deleted)
is an invalid state: ``status`` exits 1 with a line that says so (not "run init"), the
daemon's check reports it at every check and marks it invalid in the metrics, and it is
valid again once the directory is back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from keysyncd.actions.context import Run
from keysyncd.actions.drift import check_local
from keysyncd.commands.cli import main
from keysyncd.config import load_config
from keysyncd.core.vocabulary import Trigger
from keysyncd.io.local.state import load_state
from keysyncd.io.runtime.metrics import registry_for
from tests.local_cli import initialised_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return initialised_config(tmp_path)


def test_status_of_a_vanished_repository_exits_1_and_says_so(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = config.parent / "keys"
    keys.rename(config.parent / "keys.moved")
    capsys.readouterr()
    assert main(["-c", str(config), "status"]) == 1
    out = capsys.readouterr().out
    assert f"{keys}: the repository directory is missing (moved or deleted)" in out
    assert "run 'keysyncd init'" not in out


def test_a_never_initialised_repository_still_says_run_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    document = {
        "state_dir": str(tmp_path / "state"),
        "repositories": [{"name": "fernet-tokens", "path": str(tmp_path / "keys")}],
    }
    path.write_text(yaml.safe_dump(document))
    main(["-c", str(path), "status"])
    assert "run 'keysyncd init'" in capsys.readouterr().out


def test_the_check_reports_a_vanished_repository_until_it_is_back(config: Path) -> None:
    loaded = load_config(config)
    run = Run(loaded, loaded.repositories[0], Trigger.WATCH)
    keys = config.parent / "keys"
    keys.rename(config.parent / "keys.moved")
    for _ in range(2):  # every check, as any invalid state
        result = check_local(run)
        assert result is not None and result.report is not None
        report = result.report.to_json()
        assert (report["action"], report["outcome"]) == ("drift", "failed")
        assert "the repository directory is missing" in report["messages"][0]
    assert load_state(loaded.state_dir, "fernet-tokens").local_problems
    invalid = registry_for(lambda: loaded).get_sample_value(
        "keysyncd_local_repository_invalid", {"repository": "fernet-tokens"}
    )
    assert invalid == 1
    (config.parent / "keys.moved").rename(keys)
    assert check_local(run) is None  # valid again, the same keys: nothing to report
    assert not load_state(loaded.state_dir, "fernet-tokens").local_problems
