"""The README works as written: every command of its sh, bash and console blocks runs, in
order, against the fleet of ``scripts/demo --fleet-only``, in a shell that has only what the
README's steps gave it (the ``export`` lines, the README's and the one the demo prints), or is
named below with the reason it is not run here."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from keysyncd.config import load_config
from tests import commandlines
from tests.e2e.test_demo_fleet_only import read_until, stop_everything

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# Whole sections whose commands are not run here, and why.
SECTIONS_NOT_RUN = {
    "Manual install": "as root on a fresh controller and nodes: installs packages, creates "
    "accounts, writes /opt, /etc and systemd units (its config and paths are checked below)",
}
# Commands (by their beginning) not run here, and why. Each must still be in the README.
COMMANDS_NOT_RUN = {
    "./scripts/test ": "runs this very suite (as root it installs system packages)",
    "./scripts/demo ": "runs until Ctrl-C; tests/e2e/test_demo.py runs it with --duration, and "
    "this test starts its --fleet-only fleet (what the script runs after bootstrap)",
    "keysyncd adopt ": "the alternative to init, which refuses once init made keys "
    "(tests/integration cover adopt)",
    "keysyncd report show 2026": "an example id: `report list` prints the real ones",
    ".venv/bin/pip install -e '.[bench]'": "downloads matplotlib and py-spy",
    ".venv/bin/python bench/": "benchmarks: minutes to half an hour of every core",
    ".venv/bin/python -m keysyncd.testing.containers_image": "builds Debian images: root, "
    "Docker, an apt mirror",
    "python3 -m venv /tmp/mutvenv": "downloads mutmut and keysyncd's dependencies",
    "/tmp/mutvenv/bin/mutmut ": "mutation testing of the Core: a long run, in that venv",
}
# Commands that run until stopped: what they print on stderr once ready. They are stopped
# with SIGTERM, as systemd does, and must then exit 0.
DAEMONS = {"keysyncd run ": "started"}
TIMEOUT = 120.0


def matches(command: str, beginning: str) -> bool:
    """Return whether ``command`` (plus a space: a bare ``./scripts/test`` too) starts with
    ``beginning``."""
    return f"{command} ".startswith(beginning)


def reason_not_run(command: commandlines.Command) -> str | None:
    """Return why ``command`` is not run here, or None when it is."""
    if command.section in SECTIONS_NOT_RUN:
        return SECTIONS_NOT_RUN[command.section]
    return next((why for b, why in COMMANDS_NOT_RUN.items() if matches(command.text, b)), None)


def test_every_readme_command_is_valid_bash_and_every_exception_is_still_there() -> None:
    commands = commandlines.shell_commands(README.read_text())
    assert len(commands) > 20, "the README's command blocks were not found"
    for command in commands:
        syntax = subprocess.run(
            ["bash", "-n", "-c", command.text], capture_output=True, text=True, check=False
        )
        assert syntax.returncode == 0, (command, syntax.stderr)
    unused = [b for b in COMMANDS_NOT_RUN if not any(matches(c.text, b) for c in commands)]
    assert not unused, f"not-run entries no README command needs any more: {unused}"
    sections = {c.section for c in commands}
    assert not set(SECTIONS_NOT_RUN) - sections, "a not-run section no longer has commands"


def manual_install() -> tuple[str, str]:
    """Return the Manual install section's commands (joined) and its yaml block."""
    section = README.read_text().split("\n## Manual install\n", 1)[1].split("\n## ", 1)[0]
    commands = [c.text for c in commandlines.shell_commands("## Manual install\n" + section)]
    [config] = re.findall(r"^```yaml\n(.*?)^```$", section, re.S | re.M)
    return "\n".join(commands), config


def test_the_manual_install_gives_the_unit_what_it_expects(tmp_path: Path) -> None:
    """The config of the manual install is valid, and its steps make what the unit and
    that config name: the ExecStart program, the config file, the unit's user, the key
    files and the directories."""
    commands, text = manual_install()
    (path := tmp_path / "config.yaml").write_text(text)
    config = load_config(path)
    unit = (ROOT / "systemd" / "keysyncd.service").read_text()
    [(program, config_file)] = re.findall(r"^ExecStart=(\S+) --config (\S+) run$", unit, re.M)
    [user] = re.findall(r"^User=(\S+)$", unit, re.M)
    assert config.ssh.user == user
    for wanted in (
        f"ln -sf /opt/keysyncd/bin/keysyncd {program}",
        f"--password '*' {user}",
        f"chown root:{user} {config_file} && chmod 0640 {config_file}",
        f"-f {config.ssh.identity_file}",
        f"chown {user}:{user} {config.ssh.identity_file}",
        f"> {config.ssh.known_hosts}",
        f"-o {user} -g {user} {config.state_dir} {config.report_dir}",
        f"-o {user} -g {user} {config.repositories[0].path}",
        'restrict,command="internal-sftp" %s',
        f"runuser -u {user} -- keysyncd check-config",
        "/etc/systemd/system/",
    ):
        assert wanted in commands, wanted


def test_every_readme_command_runs_as_written_against_the_demo_fleet() -> None:
    """Runnable commands run in README order, each in a fresh ``bash -c`` after every
    ``export`` line before it (the README's, and the one the demo prints, which comes first:
    the reader runs it after starting the demo), and exit 0."""
    commands = commandlines.shell_commands(README.read_text())
    venv_bin = str(Path(sys.executable).parent)
    # a shell that does not have keysyncd yet: the export lines must give it
    path = ":".join(p for p in os.environ.get("PATH", "").split(":") if p and p != venv_bin)
    env = commandlines.environment(PATH=path or "/usr/bin:/bin")
    demo = subprocess.Popen(
        [sys.executable, "-m", "keysyncd.testing.demo", "--fleet-only", "--nodes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ran: list[str] = []
    try:
        shown = read_until(demo, "removes the demo directory")
        exports = re.findall(r"^  (export .*KEYSYNCD_CONFIG=.*)$", shown, re.M)
        assert len(exports) == 1, shown
        found = commandlines.run("\n".join([*exports, "command -v keysyncd"]), env, ROOT, 30)
        assert found.stdout.strip() == str(Path(venv_bin, "keysyncd")), "not the one tested"
        for command in commands:
            if reason_not_run(command) is not None:
                continue
            script = "\n".join([*exports, command.text])
            where = f"README.md line {command.line} ({command.section}): {command.text}"
            daemon = next((r for b, r in DAEMONS.items() if matches(command.text, b)), None)
            if daemon is not None:
                code = commandlines.run_daemon(command.text, env, ROOT, daemon, TIMEOUT, exports)
                assert code == 0, where
            else:
                done = commandlines.run(script, env, ROOT, TIMEOUT)
                assert done.returncode == 0, (where, done.stdout, done.stderr)
            if command.text.startswith("export "):
                exports.append(command.text)
            ran.append(command.text)
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=60)
    finally:
        stop_everything(demo)
    assert demo.returncode == 0
    for wanted in (
        "keysyncd init",
        "keysyncd rotate",
        "keysyncd sync --node node2",
        "keysyncd run",
    ):
        assert any(line.startswith(wanted) for line in ran), (wanted, ran)
