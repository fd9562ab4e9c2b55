"""A node whose host key known_hosts does not let keysyncd use is refused, with the rule that
refused it named in the command's output and in the report: a key marked ``@revoked``, or a
host listed only through a pattern keysyncd does not accept (a wildcard, a negation).
Nothing is written to that node; the others are synced.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet


def entry_of(fleet: Fleet, name: str) -> str:
    node = fleet.node(name)
    (line,) = [x for x in fleet.known_hosts.read_text().splitlines() if f"]:{node.port} " in x]
    return line


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("revoked", "every host key listed for [127.0.0.1]:{port} is marked @revoked"),
        ("wildcard", "named only by a wildcard pattern ('[127.0.0.?]:{port}', line "),
        ("negated", "named only by a negated pattern that excludes it ('![127.0.0.1]:{port}'"),
    ],
)
def test_the_refusal_names_the_known_hosts_rule(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str], rule: str, expected: str
) -> None:
    config = fleet_config(fleet, tmp_path / "ctl")
    assert main(["-c", str(config), "init"]) == 0
    victim = fleet.node("node2")
    line = entry_of(fleet, "node2")
    host, keytype, blob = line.split()[:3]
    text = fleet.known_hosts.read_text()
    if rule == "revoked":
        text += f"@revoked * {keytype} {blob}\n"
    elif rule == "wildcard":
        text = text.replace(line, f"{host.replace('127.0.0.1', '127.0.0.?')} {keytype} {blob}")
    else:
        text = text.replace(line, f"!{host} {keytype} {blob}")
    fleet.known_hosts.write_text(text)
    (victim.directory / "0").unlink()  # work for a sync that must not happen there
    before = sorted(os.listdir(victim.directory))
    capsys.readouterr()
    assert main(["-c", str(config), "sync"]) == 1
    out = capsys.readouterr().out
    wanted = expected.format(port=victim.port)
    assert wanted in out, out
    assert sorted(os.listdir(victim.directory)) == before
    latest = sorted((tmp_path / "ctl" / "reports").glob("*-sync-*.json"))[-1]
    node = json.loads(latest.read_text())["nodes"]["node2"]
    assert node["reason"] == "host_key" and wanted in node["error"]
    assert json.loads(latest.read_text())["nodes"]["node1"]["status"] == "in_sync"
