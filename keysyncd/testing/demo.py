"""The demo: a real local fleet of OpenSSH nodes and the keysyncd daemon keeping it in step.

With ``--fleet-only`` it starts only the fleet and writes the config, prints the commands
to try against it, and keeps the fleet running until Ctrl-C.

It starts N sshd processes on 127.0.0.1 (each with its own host key, port and key
directory), writes a keysyncd config that rotates every few seconds, runs
``keysyncd init``, then runs ``keysyncd run`` and prints what every node holds after
each change. Ctrl-C (or --duration) stops the daemon with SIGTERM and the fleet.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keysyncd.core.keyring import digest_of
from keysyncd.core.text import short_digest
from keysyncd.core.times import rfc3339
from keysyncd.core.vocabulary import NodeStatus
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet


def snapshot(directory: Path) -> str:
    """Return ``0:9f2c03ab77d1 1:03ab77d19f2c`` (index and short digest of every key, as
    ``status`` shows digests) for a directory."""
    try:
        names = sorted((n for n in os.listdir(directory) if n.isdigit()), key=int)
    except OSError:
        return "(unreadable)"
    return " ".join(f"{n}:{short_digest(digest_of((directory / n).read_bytes()))}" for n in names)


def show(fleet: Fleet, controller: Path) -> str:
    """Return a block with the controller's and every node's keys."""
    local = snapshot(controller)
    lines = [f"  {'controller':<10} {local}"]
    for node in fleet.nodes:
        keys = snapshot(node.directory)
        # the words of ``status`` and the action tables (keysyncd.core.vocabulary)
        mark = NodeStatus.IN_SYNC if keys == local else NodeStatus.DIFFERS
        lines.append(f"  {node.name:<10} {keys}   {mark}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3, help="how many sshd nodes (default 3)")
    parser.add_argument("--every", type=int, default=10, help="rotate every N seconds (1-59)")
    parser.add_argument("--duration", type=float, default=0, help="stop after N seconds")
    parser.add_argument("--keep", action="store_true", help="keep the demo directory")
    parser.add_argument(
        "--fleet-only",
        action="store_true",
        help="start only the fleet and its config, print the commands to try, wait for Ctrl-C",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.every <= 59 or not 1 <= args.nodes <= 50:
        parser.error("--every must be 1..59 and --nodes 1..50")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return 0 when it was stopped cleanly."""
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="keysyncd-demo-"))
    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    print(f"keysyncd demo in {root}: starting {args.nodes} OpenSSH nodes on 127.0.0.1", flush=True)
    try:
        with Fleet(root / "fleet", args.nodes) as fleet:
            config = fleet_config(
                fleet, root / "controller",
                repository={"schedule": f"*/{args.every} * * * * *", "token_expiration": 30,
                            "allow_expired_window": 0},
                drift={"verify_interval": 5},
                metrics={"textfile": str(root / "controller" / "keysyncd.prom")},
            )  # fmt: skip
            for node in fleet.nodes:
                print(f"  {node.name}: sshd PID {node.pid} on 127.0.0.1:{node.port}", flush=True)
            if args.fleet_only:
                return _wait_for_stop(config, stop)
            command = [*keysyncd_argv(), "-c", str(config)]
            print(f"$ {shlex.join(command)} init", flush=True)
            subprocess.run([*command, "init"], check=True)
            print(f"$ {shlex.join(command)} run   # rotates every {args.every}s; Ctrl-C stops")
            return _watch(fleet, root / "controller" / "keys", [*command, "run"], args, stop)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


# What --fleet-only prints to try, in this order: each runs as printed, one after the other.
COMMANDS_TO_TRY = (
    "check-config",
    "init",
    "status",
    "plan",
    "rotate --dry-run",
    "rotate",
    "verify --json",
    "report list",
    "run    # the daemon; Ctrl-C stops it",
)


def keysyncd_argv() -> list[str]:
    """Return the command that runs this keysyncd: the ``keysyncd`` script installed next to
    this interpreter (``.venv/bin/keysyncd``), else ``python -m keysyncd``; absolute paths,
    so that it runs in any shell and directory."""
    script = Path(sys.executable).parent / "keysyncd"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "keysyncd"]


def _wait_for_stop(config: Path, stop: dict[str, bool]) -> int:
    """Print the config, the commands to try (each runs as printed, in any shell) and the
    line that makes the README's commands use this fleet, then keep it up until Ctrl-C."""
    argv = keysyncd_argv()
    keysyncd = shlex.join([*argv, "-c", str(config)])
    print(f"\nconfig: {config}\n\ncommands to try (each runs as printed):", flush=True)
    for command in COMMANDS_TO_TRY:
        print(f"  {keysyncd} {command}", flush=True)
    # The README's commands name no config and call keysyncd from PATH: this line sets both.
    path = f'PATH={shlex.quote(str(Path(argv[0]).parent))}:"$PATH" ' if len(argv) == 1 else ""
    print(
        "\nfor the README's commands as written (a bare keysyncd, no -c), in your shell:\n"
        f"  export {path}KEYSYNCD_CONFIG={shlex.quote(str(config))}",
        flush=True,
    )
    print("\nthe fleet keeps running; Ctrl-C stops it and removes the demo directory", flush=True)
    while not stop["now"]:
        time.sleep(0.2)  # Ctrl-C or SIGTERM: the handlers set stop
    print("stopping the fleet", flush=True)
    return 0


def _watch(
    fleet: Fleet,
    controller: Path,
    command: list[str],
    args: argparse.Namespace,
    stop: dict[str, bool],
) -> int:
    daemon = subprocess.Popen(command)
    deadline = time.monotonic() + args.duration if args.duration else None
    last = ""
    try:
        while not stop["now"] and daemon.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                break
            current = show(fleet, controller)
            if current != last:
                print(rfc3339(time.time()), "keys (index:sha256 prefix):", flush=True)
                print(current, flush=True)
                last = current
            time.sleep(0.5)
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
    print(f"daemon stopped (exit {code}); stopping the fleet", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
