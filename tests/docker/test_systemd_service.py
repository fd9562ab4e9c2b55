"""keysyncd under real systemd (PID 1 of the controller machine), with the role's unit.

The unit is the shipped systemd/keysyncd.service plus the role's drop-in (User=, the
writable paths of its config, the IP allow list of its nodes). systemd's own view is the
judge: ``systemctl show``, the journal, the kernel's view of the main process (/proc), and
what the daemon leaves behind (reports, keys on the nodes).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from keysyncd.testing.containers_controller import CONFIG, Controller
from keysyncd.testing.containers_image import KEYSTONE_ID

pytestmark = pytest.mark.docker

UNIT = "keysyncd.service"
WAIT = 60.0
DROP_IN = "/run/systemd/system/keysyncd.service.d/test-watchdog.conf"
# The shipped unit's hardening, as `systemctl show` reports each directive when in force.
BOOLEANS = (
    "NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "RestrictRealtime",
    "LockPersonality", "MemoryDenyWriteExecute", "ProtectClock", "ProtectHostname",
    "RestrictSUIDSGID", "RemoveIPC", "PrivateMounts",
)  # fmt: skip
EXACT = {
    "ProtectSystem": "strict",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
    "User": "keystone",
    "RestrictNamespaces": "yes",
    "Type": "notify",
}


def unit_directives(controller: Controller) -> dict[str, list[str]]:
    """Return the [Service] directives of the installed unit and its drop-ins, in order."""
    _, text, _ = controller.systemctl("cat", UNIT)
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def main_pid(controller: Controller) -> int:
    """Return the service's MainPID (0 when it does not run)."""
    return int(controller.show("MainPID")["MainPID"])


def started_since(controller: Controller, since: float, **fields: str) -> list[dict[str, Any]]:
    """Return the reports started at or after ``since`` matching ``fields``."""
    return [
        r
        for r in controller.reports()
        if epoch(r["started_at"]) >= since and all(r.get(k) == v for k, v in fields.items())
    ]


@pytest.fixture
def service(deployed: dict[str, Any]) -> Iterator[Controller]:
    """Return the deployed controller with keys, its service active; restored afterwards."""
    controller: Controller = deployed["controller"]
    assert deployed["first"].returncode == 0, "the role did not apply"
    code, _, _ = controller.exec("test", "-e", "/etc/keystone/fernet-keys/0", check=False)
    if code != 0:
        init = controller.cli("init", "--wait", "60")
        assert init[0] == 0, init
    _, config, _ = controller.exec("cat", CONFIG)
    controller.systemctl("start", UNIT)
    yield controller
    controller.exec("rm", "-f", DROP_IN)
    controller.fleet.put_file(controller.name, CONFIG, config.encode(), 0o640, 0, KEYSTONE_ID)
    controller.systemctl("daemon-reload")
    controller.systemctl("restart", UNIT, check=False)


def test_start_reaches_active_through_ready_with_every_hardening_directive_in_force(
    service: Controller,
) -> None:
    controller = service
    controller.systemctl("restart", UNIT)  # returns once READY=1 arrived (Type=notify)
    shown = controller.show(
        "ActiveState", "SubState", "StatusText", "NRestarts", "Result", *BOOLEANS, *EXACT,
        "RestrictAddressFamilies", "SystemCallFilter", "ReadWritePaths", "IPAddressDeny",
        "IPAddressAllow", "WatchdogUSec",
    )  # fmt: skip
    assert (shown["ActiveState"], shown["SubState"]) == ("active", "running"), shown
    assert "next rotation" in shown["StatusText"], "no STATUS= line from the daemon"
    assert shown["WatchdogUSec"] not in ("0", "infinity"), shown["WatchdogUSec"]
    directives = unit_directives(controller)
    for name in BOOLEANS:
        assert directives.get(name) == ["yes"], f"the unit no longer sets {name}=yes"
        assert shown[name] == "yes", f"{name}: {shown[name]!r}"
    for name, value in EXACT.items():
        assert shown[name] == value, f"{name}: {shown[name]!r}, expected {value!r}"
    assert controller.show("SystemCallErrorNumber")["SystemCallErrorNumber"] in ("EPERM", "1")
    families = set(shown["RestrictAddressFamilies"].split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6"}, families
    allowed = set(shown["SystemCallFilter"].split())
    assert {"openat", "flock", "inotify_add_watch", "clone3", "chown", "fchown"} <= allowed
    denied = {"setuid", "setresuid", "mount", "reboot", "swapon", "setrlimit", "ioprio_set"}
    assert not denied & allowed, denied & allowed
    writable = set(shown["ReadWritePaths"].split())
    assert {"/var/lib/keysyncd", "/etc/keystone/fernet-keys"} <= writable, writable
    assert "/etc/keystone/credential-keys" not in writable
    assert set(shown["IPAddressDeny"].split()) == {"0.0.0.0/0", "::/0"}
    nodes = {f"{node.address}/32" for node in controller.fleet.nodes}
    assert nodes | {"127.0.0.0/8", "::1/128"} == set(shown["IPAddressAllow"].split())

    # The kernel's view of the main process: what the directives did to it.
    pid = main_pid(controller)
    _, status, _ = controller.exec("cat", f"/proc/{pid}/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2", "no seccomp filter"
    assert int(fields["CapBnd"], 16) == 0 and int(fields["CapEff"], 16) == 0
    assert fields["Uid"].split()[0] == str(KEYSTONE_ID)
    _, mounts, _ = controller.exec("cat", f"/proc/{pid}/mountinfo")
    options = {line.split()[4]: line.split()[5] for line in mounts.splitlines()}
    assert options["/"].startswith("ro"), "ProtectSystem=strict: / must be read-only"
    assert options["/etc/keystone/fernet-keys"].startswith("rw")
    assert "/tmp" in options, "PrivateTmp: its own /tmp"
    super_options = [line for line in mounts.splitlines() if line.split()[4] == "/proc"]
    assert any("subset=pid" in line for line in super_options), super_options
    # The IP allow list is enforced by the kernel here: the same properties refuse a node
    # left off the list.
    node = controller.fleet.nodes[0]
    probe = f"import socket; socket.create_connection(({node.address!r}, 22), 3)"
    refused = controller.exec(
        "systemd-run", "--wait", "--pipe", "--quiet", "-p", "IPAddressDeny=any",
        "-p", "IPAddressAllow=localhost", "python3", "-c", probe, check=False,
    )  # fmt: skip
    # refused by the cgroup's BPF filter: EPERM on egress, or the answer dropped on ingress
    assert refused[0] != 0, refused
    assert "Operation not permitted" in refused[2] or "timed out" in refused[2], refused
    allowed_run = controller.exec(
        "systemd-run", "--wait", "--pipe", "--quiet", "-p", "IPAddressDeny=any",
        "-p", f"IPAddressAllow={node.address}", "python3", "-c", probe, check=False,
    )  # fmt: skip
    assert allowed_run[0] == 0, allowed_run

    # ... and under all of it the daemon does its work: sync + verify, then rotate.
    since = time.time()
    controller.systemctl("kill", "-s", "USR2", UNIT)
    controller.wait_for(lambda: started_since(controller, since, action="verify", outcome="ok")
                        or started_since(controller, since, action="sync", outcome="ok"),
                        WAIT, "sync and verify after USR2")  # fmt: skip
    controller.assert_converged()


def test_usr1_rotates_and_a_broken_config_on_reload_keeps_the_old_one(
    service: Controller,
) -> None:
    controller = service
    before = controller.assert_converged()
    since = time.time()
    controller.systemctl("kill", "-s", "USR1", UNIT)
    rotated = controller.wait_for(
        lambda: started_since(controller, since, action="rotate", outcome="ok"), WAIT,
        "a rotation after USR1",
    )  # fmt: skip
    assert rotated[0]["trigger"] == "signal"
    after = controller.assert_converged()
    assert max(after) > max(before)

    pid = main_pid(controller)
    broken = b"repositories: 5\nnodes: nope\n"
    controller.fleet.put_file(controller.name, CONFIG, broken, 0o640, 0, KEYSTONE_ID)
    reloaded = time.time()
    controller.systemctl("reload", UNIT)
    assert main_pid(controller) == pid, "a reload must not restart the daemon"
    assert controller.show("ActiveState")["ActiveState"] == "active"
    since = time.time()
    controller.systemctl("kill", "-s", "USR1", UNIT)
    controller.wait_for(
        lambda: started_since(controller, since, action="rotate", outcome="ok"), WAIT,
        "a rotation with the old config after a rejected reload",
    )  # fmt: skip
    controller.assert_converged()

    # journald recorded each line's priority: the rejection as an error or warning.
    _, journal, _ = controller.exec("journalctl", "--no-pager", "-u", UNIT, "-o", "json",
                                    "--since", f"@{int(reloaded) - 1}")  # fmt: skip
    lines = [json.loads(line) for line in journal.splitlines() if line.startswith("{")]
    own = [e for e in lines if e.get("SYSLOG_IDENTIFIER") == "keysyncd"]
    priorities = {e["MESSAGE"]: int(e["PRIORITY"]) for e in own if isinstance(e["MESSAGE"], str)}
    assert priorities, "no keysyncd lines in the journal"
    assert not any(message.startswith("<") for message in priorities), "prefix not parsed"
    assert any(p <= 4 for m, p in priorities.items() if "config" in m.lower()), priorities
    assert any(p == 6 for p in priorities.values()), priorities


def test_the_watchdog_restarts_a_daemon_stopped_longer_than_watchdogsec(
    service: Controller,
) -> None:
    controller = service
    drop_in = "[Service]\nWatchdogSec=3\nRestartSec=1\nTimeoutAbortSec=2\n"
    controller.exec("mkdir", "-p", "/run/systemd/system/keysyncd.service.d")
    # /run is a tmpfs, which `docker cp` (put_file) cannot write into
    controller.exec("sh", "-c", 'printf "%s" "$1" > "$2"', "sh", drop_in, DROP_IN)
    controller.systemctl("daemon-reload")
    controller.systemctl("restart", UNIT)
    pid, restarts = main_pid(controller), int(controller.show("NRestarts")["NRestarts"])
    time.sleep(7)  # more than twice WatchdogSec: a daemon that is fed keeps running
    assert main_pid(controller) == pid, "restarted although it was not stopped"
    controller.exec("kill", "-STOP", str(pid))
    try:
        controller.wait_for(lambda: main_pid(controller) not in (0, pid)
                            and controller.show("ActiveState")["ActiveState"] == "active",
                            WAIT, "systemd to restart the stopped daemon")  # fmt: skip
    finally:
        controller.exec("kill", "-CONT", str(pid), check=False)
    assert int(controller.show("NRestarts")["NRestarts"]) == restarts + 1
    assert "watchdog timeout" in controller.journal().lower()


def test_stop_in_the_middle_of_a_push_exits_cleanly(service: Controller) -> None:
    controller = service
    controller.assert_converged()
    rotate = functools.partial(controller.systemctl, "kill", "-s", "USR1", UNIT)
    sessions = controller.freeze_on_push("node1", WAIT, rotate)  # the push to node1 hangs now
    try:
        started = time.monotonic()
        controller.systemctl("stop", UNIT)
        took = time.monotonic() - started
        shown = controller.show("ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
        assert shown["ActiveState"] == "inactive", shown
        assert (shown["Result"], shown["ExecMainStatus"]) == ("success", "0"), shown
        assert took < 45, f"stop took {took:.0f}s: killed by TimeoutStopSec, not a clean exit"
        controller.repository_keys()  # the controller's repository is valid
        for node in controller.fleet.nodes:
            controller.repository_keys(node.name)  # ... and so is every node's
    finally:
        controller.fleet.exec("node1", "kill", "-CONT", *sessions, check=False)
    controller.systemctl("start", UNIT)
    controller.systemctl("kill", "-s", "USR2", UNIT)
    controller.assert_converged()


def epoch(value: str) -> float:
    """Return epoch seconds for a report time (schema 2: ``2026-11-22T20:00:00.123456Z``)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
