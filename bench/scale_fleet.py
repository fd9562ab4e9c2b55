"""One measured fleet for the scale bench: real sshd nodes, a keysyncd config for them, and
the controller's keys as they were before the last rotation (to hand the nodes a freshly
rotated repository to sync, again and again)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet

# Exec sessions (rsync, ssh true) run the login shell, and bash sources ~/.bashrc for
# them; on a developer machine that can cost 100+ ms per session (pyenv here), which is
# no part of what rsync or ssh cost. SHLVL=1 tells bash it is not the login shell.
QUIET_SHELL = ("SetEnv SHLVL=1",)


class BenchFleet:
    """``count`` real sshd nodes (exec sessions allowed, for rsync) and a keysyncd config
    whose keys are retired one second after demotion, so a rotation keeps 3 key files."""

    def __init__(self, root: Path, count: int, concurrency: int | None, keep: int = 100_000):
        self.root = root
        self.count = count
        self.fleet = Fleet(
            root / "fleet",
            count,
            sftp_only=False,
            extra_config=QUIET_SHELL,
            start_timeout=30 + count / 10,
        )
        self.concurrency = concurrency
        self.keep = keep
        self.config = root / "ctl" / "config.yaml"
        self.keys = root / "ctl" / "keys"
        self.report_dir = root / "ctl" / "reports"

    def __enter__(self) -> BenchFleet:
        self.fleet.start()
        try:
            self._configure()
        except BaseException:
            self.fleet.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.fleet.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _configure(self) -> None:
        path = fleet_config(
            self.fleet,
            self.root / "ctl",
            repository={"max_active_keys": 3, "token_expiration": 1, "allow_expired_window": 0},
            reports={"keep_count": self.keep, "keep_days": 90},
        )
        document = yaml.safe_load(path.read_text())
        # keysyncd's own defaults (timeouts, concurrency) unless told otherwise
        ssh = document["ssh"]
        document["ssh"] = {key: ssh[key] for key in ("user", "identity_file", "known_hosts")}
        if self.concurrency is not None:
            document["ssh"]["concurrency"] = self.concurrency
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        for command in (["init"], ["rotate"]):
            with contextlib.redirect_stdout(io.StringIO()):
                if main(["-c", str(path), *command]) != 0:
                    raise RuntimeError(f"keysyncd {command[0]} failed on a fresh fleet")

    @property
    def sshd_pids(self) -> list[int]:
        """Return the PIDs of the nodes' listening sshd processes."""
        return [node.pid for node in self.fleet.nodes if node.pid is not None]

    def command(self, *args: str) -> list[str]:
        """Return the argv of a keysyncd command on this fleet's config (the installed
        ``keysyncd`` script beside this Python, as an operator runs it)."""
        script = Path(sys.executable).with_name("keysyncd")
        start = [str(script)] if script.exists() else [sys.executable, "-m", "keysyncd"]
        return [*start, "-c", str(self.config), *args]

    def snapshot(self) -> dict[str, bytes]:
        """Return the controller's key files (name -> content)."""
        return {p.name: p.read_bytes() for p in self.keys.iterdir() if p.name.isdigit()}

    def restore(self, keys: dict[str, bytes]) -> None:
        """Make every node hold exactly ``keys`` (files 0600), as a node that has not yet
        received the latest rotation does."""
        for node in self.fleet.nodes:
            for entry in node.directory.iterdir():
                entry.unlink()
            for name, content in keys.items():
                descriptor = os.open(node.directory / name, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(content)


@contextlib.contextmanager
def bench_fleet(
    root: Path, count: int, concurrency: int | None, keep: int = 100_000
) -> Iterator[BenchFleet]:
    """Yield a started BenchFleet; every sshd is stopped (by PID) and its files removed."""
    with BenchFleet(root, count, concurrency, keep) as fleet:
        yield fleet
