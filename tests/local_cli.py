"""The CLI run in-process against a local controller config (optionally with nodes), and
the state file edited the way a past run would have left it.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keysyncd.commands.cli import main
from keysyncd.io.local.state import load_state, save_state

ROOT = Path(__file__).resolve().parents[1]


def write_config(root: Path, nodes: list[dict[str, Any]] | None = None, **ssh: Any) -> Path:
    """A controller with one repository (sized for its daily schedule), optionally nodes."""
    data: dict[str, Any] = {
        "state_dir": str(root / "state"),
        "repositories": [
            {"name": "fernet-tokens", "path": str(root / "keys"), "max_active_keys": 5}
        ],
    }
    if nodes:
        data["ssh"] = {"user": "keystone", "connect_timeout": 2, **ssh}
        data["nodes"] = nodes
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI entry point; return (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def closed_port() -> int:
    """Return a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def edit_state(config: Path, **changes: Any) -> None:
    state = load_state(config.parent / "state", "fernet-tokens")
    save_state(config.parent / "state", dataclasses.replace(state, **changes))


def host_key_line(names: str) -> str:
    """Return a known_hosts line for ``names`` with a fresh ed25519 host key."""
    public = Ed25519PrivateKey.generate().public_key()
    blob = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{names} {blob.decode()}"


def initialised_config(root: Path) -> Path:
    """Write a config without nodes (one fernet repository, reports in ``root/reports``) and
    init it; return its path."""
    path = root / "config.yaml"
    document = {
        "state_dir": str(root / "state"),
        "report_dir": str(root / "reports"),
        "repositories": [{"name": "fernet-tokens", "path": str(root / "keys")}],
    }
    path.write_text(yaml.safe_dump(document))
    assert main(["-c", str(path), "-q", "init"]) == 0
    return path
