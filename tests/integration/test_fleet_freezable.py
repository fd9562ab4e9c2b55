"""The test fleet's stalled disk (Fleet.make_freezable), against a real sshd: while frozen a
node answers every read and a write waits in the kernel until the thaw; afterwards the
directory holds what was written, on no mount."""

from __future__ import annotations

import io
import threading
import time

from keysyncd.testing.fleet import Fleet, mounts_under
from tests.e2e.daemon_harness import descendants, stat_fields
from tests.integration.test_fleet import KEY, needs_mount, seed, sftp_to

WAIT = 10.0  # seconds a state may take to show on a loaded machine (a failure bound only)


def stalled(sshd: int) -> bool:
    """Return True once a process below ``sshd`` sleeps uninterruptibly (a frozen write)."""
    deadline = time.monotonic() + WAIT
    while not any(stat_fields(pid)[:1] == ["D"] for pid in descendants(sshd)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@needs_mount
def test_a_frozen_node_answers_reads_and_holds_writes_until_thawed(fleet: Fleet) -> None:
    files = seed(fleet, "node1")
    node = fleet.node("node1")
    directory = str(node.directory)
    assert node.pid is not None
    with fleet.make_freezable("node1") as disk, sftp_to(fleet, "node1") as sftp:
        disk.freeze()
        try:
            assert {f: sftp.open(f"{directory}/{f}").read() for f in files} == files
            late = io.BytesIO(KEY)
            writer = threading.Thread(
                target=sftp.putfo, args=(late, f"{directory}/.late.tmp"), daemon=True
            )
            writer.start()
            assert stalled(node.pid), "the node's SFTP server never waited on the frozen disk"
            assert writer.is_alive(), "the write went through a frozen filesystem"
        finally:
            disk.thaw()
        writer.join(WAIT)
        assert not writer.is_alive(), "the write did not finish after the thaw"
    assert mounts_under(fleet.root) == []
    after = {p.name: p.read_bytes() for p in node.directory.iterdir()}
    assert after == {**files, ".late.tmp": KEY}
