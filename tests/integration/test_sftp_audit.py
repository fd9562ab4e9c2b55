"""Every operation keysyncd makes on a node, as the node's own SFTP server logs it.

Each node runs OpenSSH's ``sftp-server -l INFO``, which logs every request it serves (open
with its flags and mode, rename, remove, mkdir, set). The log is the node's side of the
story, whatever keysyncd believes it sent: after init, rotations, a sync repairing planted
drift (a symlink ``01`` to a file outside, a FIFO, a world-readable key), and the same
for JWS key pairs, every line must be one keysyncd may do:

- every file it writes is created exclusively (``CREATE,EXCL``) with mode 0600 from its
  first instant, under a temp name, in a private directory (never in a public one);
- a key file appears only by a rename of such a temp file (never written in place);
- nothing is ever chmod-ed but a directory (to 0700), nothing opened for writing otherwise;
- every path is inside the node's key directories: nothing outside them is touched.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
TEMP = r"\.keysyncd-(?:clock-)?[0-9a-f]+\.tmp"  # clock-: where a node's clock is read
# the clock probe stays empty and is created 0644: keystone opens every file it lists
PROBE = r"\.keysyncd-clock-[0-9a-f]+\.tmp"
Q = r'"([^"]*)"'  # a quoted path in sftp-server's log


def audited_fleet(make_fleet: Callable[..., Fleet], root: Path) -> tuple[Fleet, Path]:
    """Start 3 nodes whose sftp-server logs every request to ``root/sftp.log``."""
    log = root / "sftp.log"
    force = f"ForceCommand {SFTP_SERVER} -e -l INFO 2>>{log}"  # sshd keeps the first value
    return make_fleet(3, extra_config=(force,)), log


def problems(log: Path, directories: dict[str, set[Path]], private: set[Path]) -> list[str]:
    """Return every logged request keysyncd may not make (empty when all are fine).

    ``directories``: each node's key directories; ``private``: those where temp files may be.
    """
    allowed = set().union(*directories.values())
    created: set[Path] = set()
    found: list[str] = []
    requests = 0

    def inside(path: str) -> Path | None:
        where = Path(path)
        return where if where.parent in allowed or where in allowed else None

    for line in log.read_text().splitlines():
        if line.startswith(("session opened", "session closed", "sent status ")):
            continue  # the session itself, and the server's error replies (a missing file)
        requests += 1
        if match := re.fullmatch(rf"(?:opendir|closedir) {Q}", line):
            if Path(match[1]) not in allowed:
                found.append(f"listed a directory outside: {line}")
        elif match := re.fullmatch(rf"open {Q} flags (\S+) mode (0\d+)", line):
            path = inside(match[1])
            if path is None:
                found.append(f"opened outside the key directories: {line}")
            elif match[2] == "READ":
                continue
            elif match[2] != "WRITE,CREATE,EXCL" or match[3] != (
                "0644" if re.fullmatch(PROBE, path.name) else "0600"
            ):
                found.append(f"a write that is not exclusive and 0600 from creation: {line}")
            elif path.parent not in private or not re.fullmatch(TEMP, path.name):
                found.append(f"created something other than a private temp file: {line}")
            else:
                created.add(path)
        elif match := re.fullmatch(rf"close {Q} bytes read \d+ written (\d+)", line):
            if inside(match[1]) is None:
                found.append(f"closed a file outside: {line}")
            elif re.fullmatch(PROBE, Path(match[1]).name) and match[2] != "0":
                found.append(f"wrote into a clock probe: {line}")
        elif match := re.fullmatch(rf"posix-rename old {Q} new {Q}", line):
            source, target = Path(match[1]), inside(match[2])
            if source not in created:
                found.append(f"renamed something it did not create: {line}")
            elif target is None or target.name.startswith("."):
                found.append(f"renamed a temp file to no key name: {line}")
        elif match := re.fullmatch(rf"remove name {Q}", line):
            if inside(match[1]) is None:
                found.append(f"removed outside the key directories: {line}")
        elif match := re.fullmatch(rf"(?:set|mkdir name) {Q} mode (\d+)", line):
            if Path(match[1]) not in allowed or match[2] != "0700":
                found.append(f"a mode set on something other than a key directory: {line}")
        else:
            found.append(f"a request keysyncd never makes: {line}")
    if requests == 0:
        found.append("sftp-server logged nothing: the audit saw no request")
    elif not created:
        found.append("no temp file creation was logged: the audit saw no write")
    return found


def test_every_request_a_node_serves_is_one_keysyncd_may_make(
    make_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet, log = audited_fleet(make_fleet, tmp_path)
    config = str(fleet_config(fleet, tmp_path / "ctl"))
    outside = tmp_path / "outside"
    outside.write_text("a file outside every key directory\n")
    assert main(["-c", config, "init"]) == 0
    assert main(["-c", config, "rotate"]) == 0
    node2 = fleet.node("node2").directory
    (node2 / "01").symlink_to(outside)  # keystone loads it as key 1, through the link
    os.mkfifo(node2 / "7")
    (node2 / "1").chmod(0o644)
    (node2 / "notes.txt").write_text("keystone ignores this name\n")
    assert main(["-c", config, "sync"]) == 0
    assert main(["-c", config, "rotate"]) == 0
    assert outside.read_text() == "a file outside every key directory\n"
    directories = {node.name: {node.directory} for node in fleet.nodes}
    private = {node.directory for node in fleet.nodes}
    assert problems(log, directories, private) == []


def test_jws_temp_files_never_appear_in_a_public_directory(
    make_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet, log = audited_fleet(make_fleet, tmp_path)
    path = fleet_config(
        fleet,
        tmp_path / "ctl",
        repository={"kind": "jws", "token_expiration": 1, "allow_expired_window": 0},
    )
    document = yaml.safe_load(path.read_text())
    document["repositories"][0].pop("max_active_keys")
    path.write_text(yaml.safe_dump(document))
    config = str(path)
    assert main(["-c", config, "init"]) == 0
    assert main(["-c", config, "rotate"]) == 0
    time.sleep(1.2)  # the first public keys are now safe to retire: the rotation deletes them
    (fleet.node("node3").directory / "public" / "stray.pem").write_text("junk\n")
    assert main(["-c", config, "rotate"]) == 0
    directories = {
        node.name: {node.directory / "private", node.directory / "public"} for node in fleet.nodes
    }
    private = {node.directory / "private" for node in fleet.nodes}
    assert problems(log, directories, private) == []
    removed = re.findall(rf"remove name {Q}", log.read_text())
    assert any("/public/" in name for name in removed), "the retired public keys were deleted"
