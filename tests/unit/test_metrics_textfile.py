"""The metrics textfile is replaced by rename from an exclusive temp file: never written in
place, never through a link planted at its path, never through a temp name that exists.

node_exporter's textfile directory is often writable by a group keysyncd does not control;
whatever sits at the textfile's name, keysyncd (root) must only ever replace the name.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from keysyncd.config import Config, parse_config
from keysyncd.io.local import fsutil
from keysyncd.io.runtime.metrics import write_metrics

VICTIM = b"root:x:0:0:must never be written through\n"
ROOT = Path(__file__).resolve().parents[2]
MODE = re.compile(r"\bmode (0[0-7]{3})\b")


def config_with_textfile(root: Path) -> Config:
    document = {
        "state_dir": str(root / "state"),
        "report_dir": str(root / "reports"),
        "repositories": [{"name": "r", "path": str(root / "keys")}],
        "metrics": {"textfile": str(root / "textfile" / "keysyncd.prom")},
    }
    return parse_config(document, root / "config.yaml")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    configured = config_with_textfile(tmp_path)
    assert configured.metrics.textfile is not None
    configured.metrics.textfile.parent.mkdir()
    return configured


def textfile_of(config: Config) -> Path:
    assert config.metrics.textfile is not None
    return config.metrics.textfile


def test_a_symlink_planted_at_the_textfile_is_replaced_not_followed(
    config: Config, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    textfile_of(config).symlink_to(victim)
    write_metrics(config)
    assert victim.read_bytes() == VICTIM
    assert not textfile_of(config).is_symlink() and textfile_of(config).is_file()
    assert b"keysyncd_nodes" in textfile_of(config).read_bytes()


def test_a_hard_link_at_the_textfile_keeps_its_other_name_unchanged(
    config: Config, tmp_path: Path
) -> None:
    other = tmp_path / "other-name"
    other.write_bytes(VICTIM)
    os.link(other, textfile_of(config))
    write_metrics(config)
    assert other.read_bytes() == VICTIM
    assert os.stat(other).st_nlink == 1  # the textfile is a new inode, the link was replaced
    assert b"keysyncd_nodes" in textfile_of(config).read_bytes()


def test_an_existing_temp_name_is_never_reused(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temp name that already exists (here a symlink to a victim) makes the write fail:
    the victim, and the textfile as it was, are unchanged."""
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    write_metrics(config)
    before = textfile_of(config).read_bytes()
    planted = ".keysyncd-planted.tmp"
    (textfile_of(config).parent / planted).symlink_to(victim)
    monkeypatch.setattr(fsutil, "temp_name", lambda: planted)
    write_metrics(config)  # logs a warning: metrics are never worth failing an action for
    assert victim.read_bytes() == VICTIM
    assert textfile_of(config).read_bytes() == before
    assert (textfile_of(config).parent / planted).is_symlink()


def test_the_textfile_is_a_new_file_each_time(config: Config) -> None:
    """Replaced by rename: a reader holding the old file sees it whole, never rewritten."""
    write_metrics(config)
    first = os.stat(textfile_of(config)).st_ino
    with textfile_of(config).open("rb") as reader:
        write_metrics(config)
        assert os.stat(textfile_of(config)).st_ino != first
        assert b"keysyncd_nodes" in reader.read()
    assert os.stat(textfile_of(config)).st_mode & 0o777 == 0o644


def documented_modes() -> dict[str, list[str]]:
    """Return the modes the README's metrics paragraph and config.yaml's textfile comment
    state for the textfile."""
    readme = (ROOT / "README.md").read_text()
    [paragraph] = re.findall(
        r"^- Metrics: `metrics\.textfile`.*?(?=^- |^#|\Z)", readme, re.M | re.S
    )
    example = (ROOT / "config.yaml").read_text()
    [comment] = re.findall(r"^  # textfile:.*?(?=^  [a-z])", example, re.M | re.S)
    return {"README.md": MODE.findall(paragraph), "config.yaml": MODE.findall(comment)}


def test_the_textfile_mode_is_the_documented_one(config: Config) -> None:
    """What the docs say is what is written, under the unit's UMask=0077 too."""
    old = os.umask(0o077)
    try:
        write_metrics(config)
    finally:
        os.umask(old)
    written = f"{stat.S_IMODE(textfile_of(config).stat().st_mode):04o}"
    assert written == "0644"  # node_exporter runs as another user and must read it
    assert documented_modes() == {"README.md": [written], "config.yaml": [written]}
