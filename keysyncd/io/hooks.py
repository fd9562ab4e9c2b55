"""Local hook commands: run with the report JSON on stdin, a timeout, output captured."""

from __future__ import annotations

import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Any

from keysyncd.io.hooktrust import hook_problem

MAX_OUTPUT = 4000  # keep reports small; the tail of the output is what explains a failure


@dataclass(frozen=True)
class HookRun:
    """One hook command's result: ``status`` is the exit code, or None if it could not run."""

    event: str
    command: tuple[str, ...]
    status: int | None
    output: str
    duration: float

    @property
    def ok(self) -> bool:
        """Return True if the command exited 0."""
        return self.status == 0

    def describe(self) -> str:
        """Return one line such as ``after_rotate hook 'migrate' exited with status 3``."""
        name = " ".join(self.command)
        if self.status is None:
            return f"{self.event} hook {name!r} could not run: {self.output.strip()[-200:]}"
        return f"{self.event} hook {name!r} exited with status {self.status}"

    def to_json(self) -> dict[str, Any]:
        """Return the run as a JSON-ready dict."""
        return {**asdict(self), "command": list(self.command)}


def run_hooks(
    event: str, commands: tuple[tuple[str, ...], ...], document: bytes, timeout: float
) -> list[HookRun]:
    """Run ``commands`` in order, each given ``document`` on stdin; stop at the first failure.

    Return one HookRun per command that ran. Never raises for a failing hook.
    """
    runs: list[HookRun] = []
    for command in commands:
        started = time.monotonic()
        untrusted = hook_problem(command)  # checked right before it runs: files change
        if untrusted is not None:
            runs.append(HookRun(event, command, None, untrusted, 0.0))
            break
        try:
            finished = subprocess.run(
                list(command),
                input=document,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
            status: int | None = finished.returncode
            output = finished.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired as expired:
            status = None
            output = (expired.output or b"").decode(
                "utf-8", "replace"
            ) + f"\ntimed out after {timeout:g}s"
        except OSError as error:
            status, output = None, f"{error.strerror or error}"
        runs.append(
            HookRun(event, command, status, output[-MAX_OUTPUT:], time.monotonic() - started)
        )
        if status != 0:
            break
    return runs
