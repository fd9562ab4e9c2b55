"""End-to-end tests drive the installed ``keysyncd`` command and daemon against a real fleet."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.daemon_harness import DaemonProcess
from tests.integration.conftest import (  # noqa: F401 - fixtures shared with integration tests
    fleet,
    fleet5,
    make_fleet,
    pytest_collection_modifyitems,
)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Return a factory starting daemons (``start(config, *args, **kw)``); all stop at the end."""
    started: list[DaemonProcess] = []

    def start(config: Path, *args: str, **kwargs: Any) -> DaemonProcess:
        daemon = DaemonProcess(config, tmp_path, *args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in reversed(started):
        daemon.kill()
