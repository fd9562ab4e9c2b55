"""The running daemon (real ``keysyncd run``, real signals, real 3-node fleet) never follows
a repository directory swapped for a link after it loaded its config, and a reload onto a
config whose repository resolves to ``state_dir`` is rejected like an unsafe one (issue 18,
item 2, as a review found it open)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from keysyncd.core.kinds import KINDS
from keysyncd.testing.fleet import Fleet
from tests.e2e.daemon_files import key_files, started_daemon
from tests.e2e.daemon_harness import DaemonProcess, wait_until
from tests.e2e.test_reload_trust import reload, sync_reaches

pytestmark = pytest.mark.fleet


def test_the_daemon_never_syncs_through_a_link_planted_after_it_started(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    config, daemon = started_daemon(fleet, tmp_path / "ctl", daemons)
    keys = Path(yaml.safe_load(config.read_text())["repositories"][0]["path"])
    before = {node.name: key_files(node.directory) for node in fleet.nodes}
    # another key set, that a sync through the link would push to every node
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    for index in (0, 1):
        (elsewhere / str(index)).write_bytes(KINDS["fernet"].generate())
        (elsewhere / str(index)).chmod(0o600)
    keys.rename(tmp_path / "moved-away")
    keys.symlink_to(elsewhere)

    daemon.send(signal.SIGUSR2)
    refusal = f"repository {keys} is a symlink"
    wait_until(lambda: refusal in daemon.stderr(), "the refusal", daemon)
    assert {node.name: key_files(node.directory) for node in fleet.nodes} == before
    assert daemon.stop() == 0


def test_a_reload_onto_a_repository_that_resolves_to_state_dir_is_rejected(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    config, daemon = started_daemon(fleet, tmp_path / "ctl", daemons)
    document = yaml.safe_load(config.read_text())
    state = Path(document["state_dir"])
    link = tmp_path / "ctl" / "keys-link"
    link.symlink_to(state)
    document["repositories"][0]["path"] = str(link)
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    reload(daemon)
    wanted = (
        f"reload rejected: At 'repositories[0].path': {link} resolves to {state}, which is "
        f"{state} ('state_dir')"
    )
    wait_until(lambda: wanted in daemon.stderr(), "the rejection", daemon)
    assert sync_reaches(config, daemon, 1) == {node.name for node in fleet.nodes}
    assert daemon.stop() == 0
