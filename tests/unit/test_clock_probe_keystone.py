"""The node clock probe (keysyncd.io.remote.sftp NodeSession.clock_skew) never breaks
keystone, which opens every file in its key directory before it looks at the name."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from keysyncd.io.local.fsutil import clock_probe_name
from keysyncd.io.remote.sftp import PROBE_MODE

# keystone's FernetUtils._get_key_files, as tests/keystone_compat.py copies it (inlined: the
# reader runs as another user, who cannot read this worktree)
READER = """
import os, sys
key_repo = sys.argv[1]
for filename in os.listdir(key_repo):
    path = os.path.join(key_repo, str(filename))
    if os.path.isfile(path):
        with open(path) as key_file:
            try:
                key_id = int(filename)
            except ValueError:
                pass
            else:
                key_file.read()
"""
PYTHON = "/usr/bin/python3"  # not the venv's: another user runs it


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a file as another owner")
def test_a_probe_created_by_a_root_login_never_breaks_keystone_listing_the_directory() -> None:
    """With ssh.user root and owner keystone (a supported setup), the probe is created by
    root in keystone's key directory for a round trip on every connection (and a kill -9 may
    leave one): keystone's reader, run as another user, must still list the directory."""
    directory = Path(tempfile.mkdtemp(prefix="attack2-probe-"))
    try:
        directory.chmod(0o755)
        for index in ("0", "1"):
            (directory / index).write_text("a" * 44)
            (directory / index).chmod(0o644)  # readable by keystone (here: nobody)
        probe = directory / clock_probe_name()
        probe.touch(mode=PROBE_MODE)  # as clock_skew's OPEN creates it, by the login user
        done = subprocess.run(
            [PYTHON, "-c", READER, str(directory)],
            user="nobody",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"keystone's listing failed: {done.stderr[-300:]}"
    finally:
        shutil.rmtree(directory, ignore_errors=True)
