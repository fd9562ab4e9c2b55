"""revoke judges the controller's clock as rotate does: a controller a day ahead of its nodes
promotes nothing and deletes nothing for a leaked primary (the gate refuses: nothing changed,
the revocation record undone), and the same revocation goes through once the clocks agree."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet

from keysyncd.actions.revoke import Target, revoke_repository
from keysyncd.commands.cli import main
from keysyncd.core.keyring import digest_of
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.integration.test_clock import DAY, act_at, everywhere
from tests.integration.test_revoke import accepted, journal, keys_of


def test_a_controller_a_day_ahead_revokes_no_primary_until_the_clocks_agree(
    fleet: Fleet, tmp_path: Path
) -> None:
    config = fleet_config(fleet, tmp_path / "ctl")
    assert main(["-c", str(config), "init"]) == 0
    assert main(["-c", str(config), "rotate"]) == 0
    primary = keys_of(config.parent / "keys")[2]
    token = Fernet(primary).encrypt(b"user")
    before = everywhere(fleet, config)
    target = Target(digest_of(primary), "leak")

    ahead = act_at(config, DAY, revoke_repository, target)
    assert not ahead.ok
    assert everywhere(fleet, config) == before, "a primary revoked on an untrusted clock"
    assert journal(config)["revocation"] is None  # undone: nothing changed for it
    assert accepted(fleet, token) == ["node1", "node2", "node3"]

    agreed = act_at(config, 0.0, revoke_repository, target)
    assert agreed.ok
    assert accepted(fleet, token) == []
