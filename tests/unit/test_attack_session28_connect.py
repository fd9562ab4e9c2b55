"""Attacks on session 28's ``Run.connect`` (it replaced ``jwsload.Connections`` and the body
of ``Run.fleet``): before 830f003 ``Run.fleet`` yielded None for a controller without nodes
before resolving anything for the nodes; now ``connect`` builds the fleet first, which
resolves the configured owner (``node_owner``) although no node will ever be written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keysyncd.actions.context import Run
from keysyncd.config import parse_config
from keysyncd.core.vocabulary import Trigger


def test_a_controller_without_nodes_needs_no_node_owner(tmp_path: Path) -> None:
    document: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "report_dir": str(tmp_path / "reports"),
        "repositories": [
            {
                "name": "fernet-tokens",
                "kind": "fernet",
                "path": str(tmp_path / "keys"),
                "owner": "no-such-user-session28",
            }
        ],
    }
    config = parse_config(document, tmp_path / "config.yaml")
    run = Run(config, config.repositories[0], Trigger.CLI)
    # as a non-root keysyncd sees it: the local repository needs no owner (``local_owner``),
    # and without nodes nothing else does
    with run.fleet() as fleet:
        assert fleet is None
