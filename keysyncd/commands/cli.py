"""Command line: argparse subcommands, exit codes, and the only place that prints.

Exit codes: 0 done; 1 deferred, drift, or a node failed; 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from keysyncd import __version__
from keysyncd.actions.bootstrap import adopt_repository, init_repository
from keysyncd.actions.context import ActionResult, Run
from keysyncd.actions.distribute import sync_repository, verify_repository
from keysyncd.actions.inspect import repository_plan, repository_status
from keysyncd.actions.jobs import RepositoryRun, each_repository
from keysyncd.actions.rotate import rotate_repository
from keysyncd.commands import render
from keysyncd.commands.logs import setup_logging
from keysyncd.config import DEFAULT_PATH, Config, RepositoryConfig, load_config
from keysyncd.core.vocabulary import Trigger
from keysyncd.errors import ConfigError, KeysyncError, LocalFileError, UsageError
from keysyncd.io.daemon_info import read_daemon_info
from keysyncd.io.lock import exclusive
from keysyncd.io.preflight import check_local_files, local_file_problems
from keysyncd.io.reportstore import load_report, load_reports, report_files, verify_chain

log = logging.getLogger("keysyncd")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="keysyncd", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        help=f"config file (default: $KEYSYNCD_CONFIG, then {DEFAULT_PATH})",
    )
    parser.add_argument("--debug", action="store_true", help="debug logs and tracebacks")
    parser.add_argument("--version", action="version", version=f"keysyncd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help_text: str, repo: bool = True, wait: bool = False
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if repo:
            sub.add_argument("--repo", metavar="R", help="only this repository")
        if wait:
            sub.add_argument(
                "--wait",
                type=float,
                default=0.0,
                metavar="SECONDS",
                help="wait up to SECONDS for the lock",
            )
        return sub

    init = command(
        "init", "create the repositories (like keystone fernet_setup) and push them", wait=True
    )
    init.add_argument("--dry-run", action="store_true", help="check, and change nothing")
    adopt = command("adopt", "take over an existing node's keys as the controller's", wait=True)
    adopt.add_argument("--from", dest="source", required=True, metavar="NODE")
    rotate = command("rotate", "rotate now: verify every node, promote, push, verify", wait=True)
    rotate.add_argument(
        "--dry-run", action="store_true", help="show what would happen; change nothing"
    )
    rotate.add_argument("--force", action="store_true", help="rotate despite unverified nodes")
    sync = command("sync", "push the repositories to the nodes and verify them", wait=True)
    sync.add_argument("--node", metavar="N", help="only this node")
    sync.add_argument("--force", action="store_true", help="also overwrite diverged nodes")
    sync.add_argument(
        "--dry-run", action="store_true", help="show what would change; change nothing"
    )
    verify = command("verify", "read every node and compare it with the controller", wait=True)
    verify.add_argument("--json", action="store_true", help="print one JSON document")
    status = command("status", "show keys, generations and node status")
    status.add_argument("--json", action="store_true", help="print one JSON document")
    command("plan", "show each key's lifecycle on the schedule and lint the config")
    command("check-config", "validate the config file", repo=False)
    report = commands.add_parser("report", help="list, show and check the audit reports")
    reports = report.add_subparsers(dest="report_command", required=True, metavar="SUBCOMMAND")
    listing = reports.add_parser("list", help="one line per report, oldest first")
    listing.add_argument(
        "--since", type=_since, metavar="WHEN", help="only since WHEN: ISO date/time or age (3d)"
    )
    listing.add_argument("--outcome", choices=("ok", "partial", "failed", "deferred"))
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    show = reports.add_parser("show", help="one report in full")
    show.add_argument("id", help="report id (a unique prefix is enough)")
    show.add_argument("--json", action="store_true", help="print the report's JSON")
    reports.add_parser("verify-chain", help="check that no report was edited or deleted")
    run = command("run", "run the daemon in the foreground (systemd Type=notify)", repo=False)
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    return parser


def _since(value: str) -> float:
    """Return an epoch time from ``2026-11-22``, ``2026-11-22T10:00:00Z`` or an age (``3d``)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1:] in units:
        return time.time() - int(value[:-1]) * units[value[-1]]
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or an age: {value!r}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def config_path(argument: Path | None) -> Path:
    """Return the config path: -c, then $KEYSYNCD_CONFIG, then the default."""
    return argument or Path(os.environ.get("KEYSYNCD_CONFIG") or DEFAULT_PATH)


def chosen(config: Config, name: str | None) -> list[RepositoryConfig]:
    """Return every repository, or only ``name``."""
    return [config.repository(name)] if name else list(config.repositories)


def progress_printer(enabled: bool) -> Callable[[str, str, int, int], None] | None:
    """Return a progress callback that redraws one stderr line, or None when not a terminal."""
    if not enabled:
        return None

    def show(phase: str, node: str, done: int, total: int) -> None:
        if done == 0:
            return
        end = "\n" if done == total else ""
        sys.stderr.write(f"\r\033[K{phase}: {done}/{total} ({node}){end}")
        sys.stderr.flush()

    return show


def cmd_check_config(args: argparse.Namespace, config: Config) -> int:
    problems = local_file_problems(config)
    for problem in problems:
        print(f"keysyncd: error: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(
        f"OK: {config.source}: {len(config.repositories)} repositories, {len(config.nodes)} nodes"
    )
    return 0


def make_run(config: Config, args: argparse.Namespace) -> Callable[[RepositoryConfig], Run]:
    """Return how this command builds the Run of each repository."""
    return lambda repository: Run(config, repository, Trigger.CLI, progress=args.progress)


def locked(
    config: Config, args: argparse.Namespace, action: str
) -> contextlib.AbstractContextManager[None]:
    """Return the lock for a mutating action; a dry run changes nothing and takes none."""
    if getattr(args, "dry_run", False):
        return contextlib.nullcontext()
    return exclusive(config.state_dir, action, args.wait)


def finish(runs: list[RepositoryRun], show: Callable[[str, ActionResult], list[str]]) -> int:
    """Print each repository's result (or error), then a summary per repository when there
    are several; return 0 when every repository is fine, else 1."""
    for run in runs:
        for result in run.results:
            print("\n".join(show(run.repository, result)))
        if run.error is not None:
            print(f"keysyncd: error: {run.repository}: {run.error}", file=sys.stderr)
    if len(runs) > 1:
        print("\n".join(render.repository_summary(runs)))
    return 0 if all(run.ok for run in runs) else 1


def cmd_init(args: argparse.Namespace, config: Config) -> int:
    with locked(config, args, "init"):
        runs = each_repository(
            chosen(config, args.repo),
            make_run(config, args),
            lambda run: [init_repository(run, args.dry_run)],
        )
    return finish(
        runs,
        lambda name, result: [
            f"{name}: initialised {config.repository(name).path} with keys 0 and 1"
            if result.report
            else f"{name}: dry run",
            *render.action(name, "init", result),
        ],
    )


def cmd_adopt(args: argparse.Namespace, config: Config) -> int:
    with exclusive(config.state_dir, "adopt", args.wait):
        for repository in chosen(config, args.repo):
            run = Run(config, repository, Trigger.CLI, progress=args.progress)
            keyset = adopt_repository(run, args.source)
            print(
                f"{repository.name}: adopted keys {list(keyset.indices)} from {args.source}; "
                "run 'keysyncd sync' to push them to every node"
            )
    return 0


def cmd_rotate(args: argparse.Namespace, config: Config) -> int:
    with locked(config, args, "rotate"):
        runs = each_repository(
            chosen(config, args.repo),
            make_run(config, args),
            lambda run: [rotate_repository(run, args.dry_run, args.force)],
        )
    return finish(runs, render.rotation)


def cmd_sync(args: argparse.Namespace, config: Config) -> int:
    with locked(config, args, "sync"):
        runs = each_repository(
            chosen(config, args.repo),
            make_run(config, args),
            lambda run: [sync_repository(run, args.node, args.force, args.dry_run)],
        )
    return finish(runs, lambda name, result: render.action(name, "sync", result))


def cmd_verify(args: argparse.Namespace, config: Config) -> int:
    # read-only on the nodes, but it records node status in the journal: one writer
    with exclusive(config.state_dir, "verify", args.wait):
        runs = each_repository(
            chosen(config, args.repo), make_run(config, args), lambda run: [verify_repository(run)]
        )
    if not args.json:
        return finish(runs, lambda name, result: render.action(name, "verify", result))
    documents = [r.report.to_json() for run in runs for r in run.results if r.report]
    errors = {run.repository: str(run.error) for run in runs if run.error is not None}
    print(json.dumps({"repositories": documents, "errors": errors}, indent=2, sort_keys=True))
    return 0 if all(run.ok for run in runs) else 1


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    now = time.time()
    statuses = [repository_status(config, r, now) for r in chosen(config, args.repo)]
    daemon = read_daemon_info(config.state_dir)
    if args.json:
        print(json.dumps({"daemon": daemon, "repositories": statuses}, indent=2, sort_keys=True))
    else:
        for line in render.daemon_lines(daemon):
            print(line)
        for status in statuses:
            for line in render.status_lines(status):
                print(line)
    return 1 if any(status["problems"] for status in statuses) else 0


def cmd_plan(args: argparse.Namespace, config: Config) -> int:
    now = time.time()
    for repository in chosen(config, args.repo):
        for line in render.plan_lines(repository_plan(config, repository, now)):
            print(line)
    return 0


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from keysyncd.commands.daemon import Daemon  # the scheduler is only needed by the daemon

    setup_logging(args.debug, args.log_format, daemon=True)
    return Daemon(config_path(args.config), config).run()


def cmd_report(args: argparse.Namespace, config: Config) -> int:
    if args.report_command == "verify-chain":
        problems = verify_chain(config.report_dir, config.state_dir)
        for problem in problems:
            print(f"BROKEN: {problem}")
        count = len(report_files(config.report_dir))
        print(f"chain of {count} reports: " + ("broken" if problems else "intact"))
        return 1 if problems else 0
    if args.report_command == "show":
        document = load_report(config.report_dir, args.id)
        lines = [json.dumps(document, indent=2, sort_keys=True)] if args.json else None
        print("\n".join(lines or render.report_lines(document)))
        return 0
    documents = [
        d
        for d in load_reports(config.report_dir)
        if (args.since is None or d.get("started_at", 0) >= args.since)
        and (args.outcome is None or d.get("outcome") == args.outcome)
    ]
    if args.json:
        print(json.dumps({"reports": documents}, indent=2, sort_keys=True))
    else:
        print("\n".join(render.report_list_lines(documents)))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Config], int]] = {
    "check-config": cmd_check_config,
    "init": cmd_init,
    "adopt": cmd_adopt,
    "rotate": cmd_rotate,
    "sync": cmd_sync,
    "verify": cmd_verify,
    "status": cmd_status,
    "plan": cmd_plan,
    "run": cmd_run,
    "report": cmd_report,
}


CONTACT_NODES = {"init", "adopt", "rotate", "sync", "verify", "run"}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(args.debug)
    args.progress = progress_printer(sys.stderr.isatty() and not getattr(args, "json", False))
    try:
        config = load_config(config_path(args.config))
        if args.command != "check-config":
            check_local_files(config, ssh=args.command in CONTACT_NODES)
        return COMMANDS[args.command](args, config)
    except ConfigError as error:
        for problem in error.problems:
            print(f"keysyncd: config error: {problem}", file=sys.stderr)
        return 2
    except (UsageError, LocalFileError) as error:
        log.debug("failed", exc_info=True)
        print(f"keysyncd: error: {error}", file=sys.stderr)
        return 2
    except KeysyncError as error:
        log.debug("failed", exc_info=True)
        print(f"keysyncd: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("keysyncd: interrupted", file=sys.stderr)
        return 130
    except Exception:
        if args.debug:
            raise
        log.error("internal error (run with --debug for the traceback)")
        return 1
