"""systemd/keysyncd.service: ``systemd-analyze verify`` accepts it, and it says what SPEC §8 asks.

The unit is verified as installed: a copy whose ExecStart names this virtualenv's
``keysyncd`` console script (systemd checks that the binary exists and is executable).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "systemd" / "keysyncd.service"
INSTALLED_PATH = "/usr/local/bin/keysyncd"
REQUIRED = {
    "Type": "notify",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
}
PRESENT = (  # any value, but set
    "ExecStart", "WatchdogSec", "StateDirectory", "User", "ReadWritePaths",
    "CapabilityBoundingSet", "RestrictAddressFamilies", "SystemCallFilter",
)  # fmt: skip
HARDENING = {  # issue 12: each of these, exactly
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictSUIDSGID": "yes",
    "RemoveIPC": "yes",
    "PrivateMounts": "yes",
    "ProcSubset": "pid",
}
MAX_EXPOSURE = 1.5  # `systemd-analyze security` of the shipped unit


def service_lines() -> list[str]:
    """Return the lines of the [Service] section (without its header)."""
    lines, inside = [], False
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            inside = line.strip() == "[Service]"
            continue
        if inside:
            lines.append(line)
    return lines


def directives() -> dict[str, list[str]]:
    """Return every [Service] directive's values, in order."""
    found: dict[str, list[str]] = {}
    for line in service_lines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` exits 0 and says nothing about the unit."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    script = shutil.which("keysyncd", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the keysyncd console script is not installed next to this Python")
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_PATH} " in text, "ExecStart no longer names the install path"
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED_PATH, script))
    # verify runs `man` for each man: link of Documentation=: it finds keysyncd(1) as
    # installed, the page keysyncd generates (and nothing else: MANPATH is only this)
    from keysyncd.commands.docs import manpage

    (tmp_path / "man" / "man1").mkdir(parents=True)
    (tmp_path / "man" / "man1" / "keysyncd.1").write_text(manpage())
    result = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "MANPATH": str(tmp_path / "man")},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # unknown keys and unparsable values are only warnings (exit 0): none may concern us
    complaints = [line for line in output.splitlines() if UNIT.name in line]
    assert complaints == [], "\n".join(complaints)


def test_unit_is_a_hardened_notify_service() -> None:
    """Type=notify, reload by SIGHUP, restart on failure, watchdog, state dir, hardening."""
    found = directives()
    for key, value in REQUIRED.items():
        assert found.get(key) == [value], f"{key}={value} expected, found {found.get(key)}"
    for key in PRESENT:
        assert found.get(key), f"{key}= is missing"
    assert found["User"][0] not in ("", "root", "0"), "keysyncd must not run as root"
    assert int(found["WatchdogSec"][0].rstrip("s")) > 0
    families = found["RestrictAddressFamilies"][0].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families), families
    assert " run" in found["ExecStart"][0], "ExecStart must run the daemon"
    assert "systemctl kill -s USR1 keysyncd" in UNIT.read_text(), "USR1 usage is not documented"


def test_every_service_directive_is_commented() -> None:
    """Each [Service] directive has a comment above it in its block (no blank line between)."""
    lines = service_lines()
    uncommented = []
    for number, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        commented = False
        for previous in reversed(lines[:number]):
            if not previous.strip():
                break
            if previous.lstrip().startswith(("#", ";")):
                commented = True
                break
        if not commented:
            uncommented.append(line)
    assert uncommented == [], f"directives without a comment: {uncommented}"


def test_the_unit_has_the_extra_hardening_and_denies_privileged_and_resource_calls() -> None:
    found = directives()
    for key, value in HARDENING.items():
        assert found.get(key) == [value], f"{key}={value} expected, found {found.get(key)}"
    assert "~@privileged @resources" in found["SystemCallFilter"]
    # paths a host may lack are optional ("-"): a fernet-only host has no credential-keys
    writable = found["ReadWritePaths"][0].split()
    assert [p for p in writable if p.startswith("/etc/")] == [], writable
    assert "-/etc/keystone/credential-keys" in writable


def test_systemd_analyze_security_exposure_is_at_most_1_5(tmp_path: Path) -> None:
    """``systemd-analyze security --offline=true`` rates the shipped unit 1.5 or better."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text())
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output)
    assert found is not None, output
    assert float(found[1]) <= MAX_EXPOSURE, output
