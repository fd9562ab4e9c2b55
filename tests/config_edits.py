"""Config files for the config tests: a base config and edits of it, written as YAML, and
the CLI entry point run in-process (tests/unit/test_config.py, test_config_errors.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml


def write(tmp_path: Path, data: Any, name: str = "config.yaml") -> Path:
    """Write ``data`` (YAML text if a str, else dumped as YAML) and return the file."""
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and accepted values -------------------------------------------------------------

MINIMAL = {
    "state_dir": "/var/lib/keysyncd",
    "repositories": [{"name": "fernet-tokens", "path": "/etc/keystone/fernet-keys"}],
}


# --- bad inputs, each through the real CLI ----------------------------------------------------

BASE: dict[str, Any] = {
    "state_dir": "/var/lib/keysyncd",
    "repositories": [{"name": "fernet-tokens", "path": "/etc/keystone/fernet-keys"}],
    "ssh": {"user": "keystone", "known_hosts": "/etc/keysyncd/known_hosts"},
    "nodes": [{"name": "ctl1", "host": "192.0.2.11"}, {"name": "ctl2", "host": "192.0.2.12"}],
}


DELETE = object()


R0 = ("repositories", 0)


def edited_from(data: dict[str, Any], edit: tuple[tuple[Any, ...], Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with one (key path, value) set, or deleted for DELETE."""
    data = copy.deepcopy(data)
    keys, value = edit
    target: Any = data
    for key in keys[:-1]:
        target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
    if value is DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return data


def edited(*edits: tuple[tuple[Any, ...], Any]) -> dict[str, Any]:
    """Return a copy of BASE with each (key path, value) set, or deleted for DELETE."""
    data = BASE
    for edit in edits:
        data = edited_from(data, edit)
    return copy.deepcopy(data)


def second_repository(**fields: Any) -> dict[str, Any]:
    return edited(
        (("repositories",), [*BASE["repositories"], {"name": "credential-keys", **fields}])
    )
