"""Logging for the CLI and the daemon: plain lines, journald priority prefixes, or JSON."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import ClassVar


def setup_logging(
    debug: bool, log_format: str = "text", daemon: bool = False, verbosity: int = 0
) -> None:
    """Log to stderr: INFO and up; ``verbosity`` > 0 (-v) adds keysyncd's DEBUG lines, < 0
    (-q) keeps only errors; --debug shows every DEBUG line, the libraries' too.

    The CLI prints ``keysyncd: level: message`` (``keysyncd: error: ...``, as its own
    error lines); the daemon adds timestamps, except under
    systemd where journald timestamps lines itself and reads ``<N>`` priority prefixes;
    ``--log-format json`` prints one JSON object per line.
    """
    handler = logging.StreamHandler(sys.stderr)
    under_systemd = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif daemon and under_systemd:
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    elif daemon:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(CliFormatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if debug:
        root.setLevel(logging.DEBUG)
    else:
        root.setLevel(logging.ERROR if verbosity < 0 else logging.INFO)
    logging.getLogger("keysyncd").setLevel(
        logging.DEBUG if debug or verbosity > 0 else logging.NOTSET
    )
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("paramiko").setLevel(logging.DEBUG if debug else logging.CRITICAL)


class CliFormatter(logging.Formatter):
    """``keysyncd: error: message``: the level in lower case, the prefix of the command
    line's own error and warning lines (keysyncd.commands.output), so that one error reads
    the same whether it was printed or logged."""

    def format(self, record: logging.LogRecord) -> str:
        return f"keysyncd: {record.levelname.lower()}: {super().format(record)}"


class JournalFormatter(logging.Formatter):
    """Prefix each line with its syslog priority (``<3>``) so journald records the level."""

    PRIORITIES: ClassVar[dict[str, int]] = {
        "CRITICAL": 2,
        "ERROR": 3,
        "WARNING": 4,
        "INFO": 6,
        "DEBUG": 7,
    }

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self.PRIORITIES.get(record.levelname, 6)}>{super().format(record)}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        return json.dumps(document)
