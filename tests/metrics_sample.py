"""The metrics exposition keysyncd's own collector writes for a sample state: a repository
with keys in every role, a verified node and one not yet, a rotation, drift, a deferral and
durations. Shared by the promtool check and the dashboard's exported-names check."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from keysyncd.config import Config
from keysyncd.config.load import parse_config
from keysyncd.core.journal import Durations, NodeRecord, RepositoryState
from keysyncd.core.policy import KeyHistory
from keysyncd.io.local.state import save_state
from keysyncd.io.runtime.metrics import registry_for


def sample_config(root: Path) -> Config:
    """Return the sample config under ``root``: one fernet repository, nodes n1 and n2."""
    return parse_config(
        {
            "state_dir": str(root / "state"),
            "repositories": [{"name": "fernet-tokens", "path": str(root / "keys")}],
            "ssh": {"user": "keystone", "known_hosts": str(root / "known_hosts")},
            "nodes": [{"name": "n1", "host": "192.0.2.1"}, {"name": "n2", "host": "192.0.2.2"}],
        },
        root / "config.yaml",
    )


def sample_exposition(root: Path) -> bytes:
    """Return the exposition keysyncd's collector writes for the sample state under ``root``."""
    config = sample_config(root)
    save_state(
        config.state_dir,
        RepositoryState(
            name="fernet-tokens",
            generation=2,
            digests={0: "a" * 64, 1: "b" * 64, 2: "c" * 64},
            history={
                0: KeyHistory(created_at=3.0),
                1: KeyHistory(created_at=0.5, promoted_at=1.0, demoted_at=3.0),
                2: KeyHistory(created_at=1.0, promoted_at=3.0),
            },
            last_rotation_at=3.0,
            last_success={"sync": 3.0, "verify": 3.0},
            nodes={"n1": NodeRecord(status="in_sync", last_verified_at=3.0, generation=2)},
            counters={"drift:missing": 1, "deferred": 2},
            durations={"sync": Durations().add(0.4), "rotate": Durations().add(2.0)},
        ),
    )
    return generate_latest(registry_for(lambda: config))
