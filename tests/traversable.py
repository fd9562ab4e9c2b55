"""Node directories every user can reach, for tests that configure an owner other than
root: pytest's own tmp (``/tmp/pytest-of-root``) is ``0700``, so an owner whose keys live
below it could never reach them, and keysyncd rightly says so (issue 19: every directory
above the keys must let the owner through). ``traversable_root`` is the fixture (registered
in tests/integration/conftest.py); ``repoint`` moves a fleet's nodes below it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from keysyncd.testing.fleet import Fleet


@pytest.fixture
def traversable_root() -> Iterator[Path]:
    """Return a new directory ``0755`` below ``/tmp`` (every user passes through both);
    removed with everything below it when the test ends."""
    root = Path(tempfile.mkdtemp(prefix="keysyncd-access-"))
    try:
        root.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def repoint(config: Path, fleet: Fleet, root: Path, **repository: object) -> dict[str, Path]:
    """Point every node of ``config`` at ``root/<node>/keys`` (``root/<node>`` made ``0755``,
    ``keys`` left to the test), merge ``repository`` into the first repository's settings
    (``owner``, ``group``, ...); return the new key directories by node."""
    document = yaml.safe_load(config.read_text())
    document["repositories"][0] |= repository
    paths = {node.name: root / node.name / "keys" for node in fleet.nodes}
    for entry in document["nodes"]:
        (root / entry["name"]).mkdir(mode=0o755)
        entry["path"] = str(paths[entry["name"]])
    config.write_text(yaml.safe_dump(document))
    return paths
