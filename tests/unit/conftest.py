"""Fixtures shared by the unit tests."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.deployment import _Jinja
from tests.local_cli import cli, closed_port, host_key_line, write_config


@pytest.fixture
def renderer() -> Any:
    return _Jinja()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """cli.main() replaces the root logger's handlers with one bound to the captured stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def initialised(config: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert cli(capsys, "-c", str(config), "init")[0] == 0
    return config


@pytest.fixture
def dead_node(tmp_path: Path) -> Path:
    """A controller whose one node is known (known_hosts, identity) but not listening."""
    identity = tmp_path / "id_ed25519"
    identity.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    identity.chmod(0o600)
    port = closed_port()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(host_key_line(f"[127.0.0.1]:{port}") + "\n")
    return write_config(
        tmp_path,
        [{"name": "ctl1", "host": "127.0.0.1", "port": port}],
        identity_file=str(identity),
        known_hosts=str(known_hosts),
    )


@pytest.fixture(scope="module")
def startup_controller(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An initialised controller (no nodes), and a config naming nodes for the views: what
    the start-up tests run check-config, status and plan on."""
    root = tmp_path_factory.mktemp("startup")
    repository = {"name": "fernet-tokens", "path": str(root / "keys"), "max_active_keys": 5}
    plain = root / "plain.yaml"
    plain.write_text(
        yaml.safe_dump({"state_dir": str(root / "state"), "repositories": [repository]})
    )
    subprocess.run(
        [sys.executable, "-m", "keysyncd", "-c", str(plain), "init"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with_nodes = root / "nodes.yaml"
    with_nodes.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(root / "state"),
                "repositories": [repository],
                "ssh": {"user": "keystone", "known_hosts": str(root / "known_hosts")},
                "nodes": [{"name": "ctl1", "host": "192.0.2.11"}],
            }
        )
    )
    return {"plain": plain, "nodes": with_nodes}
