"""Fixtures shared by the unit tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
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
