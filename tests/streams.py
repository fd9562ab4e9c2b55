"""Reading a child's output as it comes, bounded in time: for tests that act on a line."""

from __future__ import annotations

import os
import selectors
import time
from typing import IO


def read_until(stream: IO[str] | None, text: str, timeout: float, what: str) -> str:
    """Return everything ``stream`` gave up to the first whole line containing ``text``.

    Reads the raw descriptor (a buffered reader would keep lines select cannot see). Raise
    AssertionError naming ``what`` if the stream ends or ``timeout`` seconds pass first.
    """
    assert stream is not None, f"{what}: no pipe to read"
    descriptor = stream.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(descriptor, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(max(deadline - time.monotonic(), 0.01)):
                continue
            chunk = os.read(descriptor, 65536)
            assert chunk, f"{what} ended before printing {text!r}:\n{seen.decode()}"
            seen += chunk
            if text.encode() in seen and seen.endswith(b"\n"):
                return seen.decode()
    raise AssertionError(f"{what}: no {text!r} within {timeout}s:\n{seen.decode()}")
