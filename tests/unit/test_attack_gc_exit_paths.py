"""Attack on 1d5fdf5: every way out of main gives the caller's collector back."""

from __future__ import annotations

import contextlib
import gc
from pathlib import Path

import pytest

from keysyncd.commands import views
from keysyncd.commands.cli import main


@pytest.mark.parametrize(
    "raised", [KeyboardInterrupt, BrokenPipeError, SystemExit, RuntimeError, MemoryError]
)
@pytest.mark.parametrize("was", [True, False])
def test_the_collector_comes_back_whatever_the_command_raises(
    startup_controller: dict[str, Path], monkeypatch: pytest.MonkeyPatch, raised: type, was: bool
) -> None:
    def boom(*_: object) -> int:
        assert not gc.isenabled()
        raise raised()

    monkeypatch.setattr(views, "cmd_status", boom)
    before = gc.isenabled()
    (gc.enable if was else gc.disable)()
    try:
        with contextlib.suppress(BaseException):
            main(["--debug", "-c", str(startup_controller["nodes"]), "status"])
        assert gc.isenabled() is was
    finally:
        (gc.enable if before else gc.disable)()
