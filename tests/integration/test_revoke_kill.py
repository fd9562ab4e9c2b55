"""kill -9 of ``keysyncd revoke`` at seeded random instants (issue 22, item 5): after each
kill (half at a random instant of the whole run, half at a random instant after the
revocation was journaled), before anything repairs it, the controller and every node load
with keystone's loader and hold a staged key and a primary, and the journal parses; then the
next ``sync`` finishes the revocation (when it was begun: journaled), and the revoked key is
on no node and no token made with it validates anywhere. The targets cycle through primary,
secondary and staged keys; a rotation in between keeps three keys."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from cryptography.fernet import Fernet

from keysyncd.core.keyring import digest_of
from keysyncd.io.local.state import load_state
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests import revoking
from tests.integration.test_revoke import accepted, keys_of
from tests.integration.test_rotate import run
from tests.keystone_compat import get_key_files, key_names
from tests.revoking import wait_for_journal

SEED = 20261207
TRIALS = 21


def start(config: Path, index: int) -> subprocess.Popen[bytes]:
    """Start ``keysyncd revoke`` of key ``index`` as its own process."""
    return revoking.start(config, "--index", str(index), "--reason", "kill -9 trial")


def assert_loadable(directory: Path) -> None:
    """keystone loads ``directory``: a staged key 0 and a primary, no empty key file."""
    _, keys = get_key_files(str(directory))
    assert 0 in keys and max(keys) > 0, (directory, sorted(keys))
    for name in key_names(directory):
        assert (directory / name).stat().st_size > 0, (directory, name)
    for key in keys.values():
        Fernet(key)


def target(config: Path, trial: int) -> int:
    """Return the index to revoke in ``trial``: the primary, a secondary, then staged."""
    indices = sorted(keys_of(config.parent / "keys"))
    if len(indices) < 3:
        assert run(config, "rotate") == 0
        indices = sorted(keys_of(config.parent / "keys"))
    return [indices[-1], indices[1], 0][trial % 3]


def test_kill_9_at_random_instants_of_a_revocation(fleet: Fleet, tmp_path: Path) -> None:
    config = fleet_config(fleet, tmp_path / "ctl")
    assert run(config, "init") == 0
    assert run(config, "rotate") == 0
    began = time.monotonic()
    assert start(config, 1).wait(timeout=60) == 0  # uncut: how long a revocation takes
    uncut = time.monotonic() - began
    chance = random.Random(SEED)
    seen: Counter[str] = Counter()
    places = [config.parent / "keys", *(node.directory for node in fleet.nodes)]
    for trial in range(TRIALS):
        index = target(config, trial)
        leaked = keys_of(config.parent / "keys")[index]
        process = start(config, index)
        if trial % 2:  # anywhere in the run
            time.sleep(chance.uniform(0.0, uncut))
        else:  # once the revocation is journaled: somewhere inside it
            journaled = wait_for_journal(config, process, uncut)
            time.sleep(chance.uniform(0.0, max(uncut - journaled, 0.05)))
        process.send_signal(signal.SIGKILL)
        code = process.wait(timeout=60)
        for directory in places:
            assert_loadable(directory)
        state = load_state(config.parent / "state", "fernet-tokens")
        begun = digest_of(leaked) in {key.digest for key in state.revoked}
        seen["finished" if code == 0 else "unfinished" if begun else "not begun"] += 1
        assert run(config, "sync") == 0, trial
        assert load_state(config.parent / "state", "fernet-tokens").revocation is None
        if begun:
            assert all(leaked not in keys_of(d).values() for d in places), trial
            assert accepted(fleet, Fernet(leaked).encrypt(b"user")) == [], trial
    print(dict(seen))
    assert seen["unfinished"] >= 6, seen  # the kills hit revocations under way
