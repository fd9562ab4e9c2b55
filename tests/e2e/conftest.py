"""End-to-end tests drive the installed ``keysyncd`` command and daemon against a real fleet.

``daemons`` starts ``keysyncd run`` processes as systemd does (tests/e2e/daemon_harness.py);
``controller`` is a running controller with fast drift checks (tests/e2e/controller.py).
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keysyncd.testing.fleet import Fleet
from tests.e2e.controller import Controller
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


@pytest.fixture
def controller(fleet: Fleet, tmp_path: Path) -> Iterator[Controller]:  # noqa: F811 - fleet above
    """Return a running controller (tests/e2e/controller.py) over ``fleet``; stopped at the end."""
    ctl = Controller(fleet, tmp_path / "ctl")
    with ctl.running():
        yield ctl
