"""Files an installation needs beside the code, shipped in the wheel as package data.

``schemas`` (the report JSON schemas), ``systemd`` (the unit) and ``monitoring`` (Prometheus
rules and their unit tests) are the repository's top-level folders of the same names, mapped
into this package by pyproject.toml when the wheel is built. ``share_path`` finds them in an
installed wheel and in a source checkout (or an editable install) alike.
"""

from __future__ import annotations

from pathlib import Path

NAMES = ("schemas", "systemd", "monitoring")


def share_path(name: str) -> Path:
    """Return the directory of the shipped files ``name`` (one of NAMES).

    Example: ``share_path("monitoring") / "keysyncd.rules.yml"``.
    """
    if name not in NAMES:
        raise ValueError(f"no shipped files called {name!r} (known: {', '.join(NAMES)})")
    installed = Path(__file__).resolve().parent / name
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / name  # the source tree's top-level folder
