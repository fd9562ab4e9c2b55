"""Write a keysyncd config for a local fleet (tests, benchmark, demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from keysyncd.testing.fleet import Fleet


def fleet_config(
    fleet: Fleet,
    root: Path,
    repository: dict[str, Any] | None = None,
    **sections: Any,
) -> Path:
    """Write ``root/config.yaml`` managing ``root/keys`` on every node of ``fleet``; return it.

    ``repository`` overrides fields of the one repository; ``sections`` override
    top-level sections (e.g. ``drift={...}``).
    """
    root.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "state_dir": str(root / "state"),
        "report_dir": str(root / "reports"),
        "repositories": [
            {
                "name": "fernet-tokens",
                "kind": "fernet",
                "path": str(root / "keys"),
                "max_active_keys": 3,
                "token_expiration": 3600,
                "allow_expired_window": 0,
                **(repository or {}),
            }
        ],
        "ssh": {
            "user": fleet.user,
            "identity_file": str(fleet.client_key),
            "known_hosts": str(fleet.known_hosts),
            "connect_timeout": 5,
            "operation_timeout": 10,
            "concurrency": 16,
        },
        "nodes": [node.config_entry() for node in fleet.nodes],
        **sections,
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
