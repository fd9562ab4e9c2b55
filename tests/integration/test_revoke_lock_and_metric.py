"""revoke waits for the lock like every mutating command (``--wait SECONDS``), and the
per-node metric of a revoked key held also names a JWS node that did not answer. Real
OpenSSH fleet, keystone's JWS validation (tests/keystone_jws.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from cryptography.fernet import Fernet

from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.integration.test_revoke import accepted, keys_of
from tests.integration.test_revoke_jws import REPO, cli, journal, ready, revoke, tokens
from tests.integration.test_revoke_jws import accepted as jws_accepted
from tests.integration.test_rotate import holding_hook, run
from tests.jws_world import World

__all__ = ["ready"]  # the fixture, imported


def test_revoke_meets_a_held_lock_and_waits_for_it_with_wait(fleet: Fleet, tmp_path: Path) -> None:
    config = fleet_config(fleet, tmp_path / "ctl")
    assert run(config, "init") == 0
    leaked = keys_of(config.parent / "keys")[1]
    token = Fernet(leaked).encrypt(b"user")
    # a rotation holds the lock: its before_rotate hook waits for the test to release it
    started, release = holding_hook(config, tmp_path)
    keysyncd = [sys.executable, "-m", "keysyncd", "-c", str(config)]
    revoke = [*keysyncd, "revoke", "--repo", "fernet-tokens", "--index", "1", "--reason", "x"]
    first = subprocess.Popen([*keysyncd, "rotate"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(600):  # bounded: 30 s
            if started.exists() or first.poll() is not None:
                break
            time.sleep(0.05)
        assert started.exists(), "the rotation never reached its before_rotate hook"
        refused = subprocess.run(revoke, capture_output=True, text=True, timeout=30)
        waiting = subprocess.Popen([*revoke, "--wait", "30"], stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        assert waiting.poll() is None, "revoke --wait did not wait for the lock"
    finally:
        release.touch()
    first.communicate(timeout=30)
    _, waited = waiting.communicate(timeout=60)
    assert refused.returncode == 1
    assert f"another keysyncd holds the lock: PID {first.pid} (rotate) since" in refused.stderr
    assert waiting.returncode == 0, waited
    assert accepted(fleet, token) == []  # revoked once the lock was free


def test_the_metric_names_a_jws_node_that_may_hold_a_revoked_public_key(
    ready: World, tmp_path: Path
) -> None:
    world = ready
    textfile = tmp_path / "textfile" / "keysyncd.prom"
    textfile.parent.mkdir(mode=0o700)
    document = yaml.safe_load(world.path.read_text())
    document["metrics"] = {"textfile": str(textfile)}
    world.path.write_text(yaml.safe_dump(document))

    def held(node: str) -> str:
        label = f'keysyncd_node_revoked_key_held{{node="{node}",repository="{REPO}"}}'
        [line] = [line for line in textfile.read_text().splitlines() if line.startswith(label)]
        return line.split()[-1]

    before = tokens(world)
    world.fleet.stop_node("node3")
    assert revoke(world, "--node", "node2", "--reason", "leak", "--force") == 1
    assert (held("node1"), held("node2"), held("node3")) == ("0.0", "0.0", "1.0")
    assert json.dumps(journal(world)["revocation"]) != "null"
    world.fleet.start_node("node3")
    assert cli(world, "sync", "--repo", REPO) == 0
    assert held("node3") == "0.0"
    assert jws_accepted(world, before["node2"]) == []
