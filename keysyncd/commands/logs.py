"""Logging for the CLI and the daemon: plain lines, journald priority prefixes, or JSON."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import TextIO


def setup_logging(
    debug: bool, log_format: str = "text", daemon: bool = False, verbosity: int = 0
) -> None:
    """Log to stderr, INFO and up (-v: keysyncd's DEBUG too; -q: errors only; --debug:
    everything), as ``keysyncd: level: message`` (CLI), timed lines or journald's (daemon),
    or one JSON object per line (``--log-format json``)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif daemon:
        handler.setFormatter(daemon_formatter(sys.stderr, os.environ))
    else:
        handler.setFormatter(CliFormatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.ERROR if verbosity < 0 else logging.INFO)
    logging.getLogger("keysyncd").setLevel(
        logging.DEBUG if debug or verbosity > 0 else logging.NOTSET
    )
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("paramiko").setLevel(logging.DEBUG if debug else logging.CRITICAL)


def to_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Return True when ``stream`` is the one ``JOURNAL_STREAM`` names (a child whose stderr
    was sent elsewhere inherits the variable, so the stream itself is compared)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        found = os.fstat(stream.fileno())
        return (found.st_dev, found.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):  # not a file (a test's buffer), or unset
        return False


def daemon_formatter(stream: TextIO, environ: Mapping[str, str]) -> logging.Formatter:
    """Return ``<6>keysyncd.x: message`` for the journal (it adds the time), else
    ``2026-11-22T20:00:00Z INFO keysyncd.x: message``."""
    if to_journal(stream, environ):
        return JournalFormatter("%(name)s: %(message)s")
    return UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


class UtcFormatter(logging.Formatter):
    """``%(asctime)s`` as RFC 3339 UTC (``2026-11-22T20:00:00Z``), as keysyncd shows time."""

    converter = time.gmtime  # type: ignore[assignment]  # typeshed: a method, not a function
    default_time_format = "%Y-%m-%dT%H:%M:%SZ"
    default_msec_format = None


class CliFormatter(logging.Formatter):
    """``keysyncd: error: message``, as the command line's own lines (``output``)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"keysyncd: {record.levelname.lower()}: {super().format(record)}"


PRIORITIES = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}  # syslog's


class JournalFormatter(logging.Formatter):
    """Prefix each line with its syslog priority (``<3>``) so journald records the level."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{PRIORITIES.get(record.levelname, 6)}>{super().format(record)}"


class JsonFormatter(UtcFormatter):
    """One JSON object per line: time (RFC 3339 UTC), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        return json.dumps(document)
