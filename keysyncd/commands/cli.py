"""The command line's entry point: parse, load the config, run one command (its module
imported only then: tests/unit/test_startup.py), map errors to exit codes."""

from __future__ import annotations

import gc
import importlib
import os
import sys

from keysyncd.commands.exits import Exit
from keysyncd.commands.output import Output
from keysyncd.commands.parser import DEFAULT_CONFIG, UsageProblem, parse

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a --help cost)

if TYPE_CHECKING:  # at run time only what --help needs is imported up here
    import argparse
    from collections.abc import Callable
    from pathlib import Path

    from keysyncd.config import Config

# command -> (module under keysyncd.commands, function); imported when the command runs
COMMANDS: dict[str, tuple[str, str]] = {
    "check-config": ("check", "cmd_check_config"),
    "init": ("acting", "cmd_init"),
    "adopt": ("acting", "cmd_adopt"),
    "rotate": ("acting", "cmd_rotate"),
    "sync": ("acting", "cmd_sync"),
    "verify": ("acting", "cmd_verify"),
    "confirm-migration": ("acting", "cmd_confirm_migration"),
    "revoke": ("acting", "cmd_revoke"),
    "status": ("views", "cmd_status"),
    "plan": ("views", "cmd_plan"),
    "report": ("reports", "cmd_report"),
}
NO_CONFIG: dict[str, tuple[str, str]] = {
    "completion": ("docs", "cmd_completion"),
    "manpage": ("docs", "cmd_manpage"),
}
CONTACT_NODES = {"init", "adopt", "rotate", "sync", "verify", "confirm-migration", "revoke", "run"}
NO_RESULT = {"run", "completion", "manpage"}  # --json has nothing to print for these

if TYPE_CHECKING:
    Handler = Callable[[argparse.Namespace, Config, Output], int]


def config_path(argument: Path | None) -> Path:
    """Return the config path: -c, then $KEYSYNCD_CONFIG, then the default."""
    from pathlib import Path

    return argument or Path(os.environ.get("KEYSYNCD_CONFIG") or DEFAULT_CONFIG)


def where_config_came_from(argument: Path | None) -> str:
    """Return how a missing config file was chosen (empty when -c named it)."""
    if argument is not None:
        return ""
    if os.environ.get("KEYSYNCD_CONFIG"):
        return " (named by $KEYSYNCD_CONFIG; -c FILE overrides it)"
    return " (the default: pass -c FILE or set $KEYSYNCD_CONFIG to use another)"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (see keysyncd.commands.exits).

    Start-up makes many objects and frees few: the cyclic collector's passes over them cost
    about 4 ms of a light command's 100 ms start (issue 20), so it is off until a command
    that contacts nodes or runs the daemon (long, and paramiko makes cycles) starts; the
    others end in moments on bounded input. The caller's collector state is restored on
    return (tests/unit/test_startup_gc.py).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _main(argv)
    finally:
        (gc.enable if collecting else gc.disable)()


def _main(argv: list[str] | None) -> int:
    try:
        args = parse(argv)
    except SystemExit as stop:  # --help and --version
        return stop.code if isinstance(stop.code, int) else int(Exit.USAGE)
    except UsageProblem as problem:
        out = Output(json="--json" in (sys.argv[1:] if argv is None else argv))
        out.error(str(problem))
        return out.failure(Exit.USAGE, [str(problem)])
    from keysyncd.commands.logs import setup_logging

    out = Output(json=args.json, quiet=args.quiet > 0, progress_enabled=sys.stderr.isatty())
    setup_logging(args.debug, verbosity=args.verbose - args.quiet)
    try:
        return _dispatch(args, out)
    except KeyboardInterrupt:
        out.error("interrupted")
        return out.failure(Exit.INTERRUPTED, ["interrupted"])
    except BrokenPipeError:  # the reader went away (| head): no traceback, no more output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(Exit.ATTENTION)


def _dispatch(args: argparse.Namespace, out: Output) -> int:
    from keysyncd.errors import ConfigError, KeysyncError, LocalFileError, UsageError

    try:
        return _run(args, out)
    except ConfigError as error:
        for problem in error.problems:
            out.error(problem, prefix="config error")
        if args.command == "check-config":  # the findings as data, as when the config loads
            findings = [
                {"severity": "error", "check": "config", "message": problem}
                for problem in error.problems
            ]
            return out.failure(Exit.USAGE, error.problems, ok=False, findings=findings)
        return out.failure(Exit.USAGE, error.problems)
    except (UsageError, LocalFileError) as error:
        return _failed(out, Exit.USAGE, error)
    except KeysyncError as error:  # a refusal, a busy lock, a failed step: needs attention
        return _failed(out, Exit.ATTENTION, error)
    except BrokenPipeError:
        raise
    except Exception:
        if args.debug:
            raise
        import logging

        logging.getLogger("keysyncd").error("internal error (run with --debug for the traceback)")
        return out.failure(Exit.ATTENTION, ["internal error"])


def _failed(out: Output, code: Exit, error: Exception) -> int:
    import logging

    logging.getLogger("keysyncd").debug("failed", exc_info=True)
    out.error(str(error))
    return out.failure(code, [str(error)])


def _run(args: argparse.Namespace, out: Output) -> int:
    from keysyncd.errors import UsageError

    if args.json and args.command in NO_RESULT:
        hint = " (use --log-format json for JSON logs)" if args.command == "run" else ""
        raise UsageError(f"--json: '{args.command}' prints no result{hint}")
    if args.command in NO_CONFIG:
        module, function = NO_CONFIG[args.command]
        return int(
            getattr(importlib.import_module(f"keysyncd.commands.{module}"), function)(args, out)
        )
    from keysyncd.errors import ConfigError
    from keysyncd.io.local.hooktrust import load_trusted_config
    from keysyncd.io.remote.preflight import check_local_files

    path = config_path(args.config)
    try:
        # check-config lists an unsafe file among its findings; every other command refuses it
        config = load_trusted_config(path, strict=args.command != "check-config")
    except ConfigError as error:
        missing = f"{path}: config file not found"
        if error.problems == [missing]:
            raise ConfigError([missing + where_config_came_from(args.config)]) from None
        raise
    if args.command in CONTACT_NODES:
        gc.enable()
    if args.command == "run":
        return _run_daemon(args, config)
    if args.command != "check-config":
        check_local_files(config, ssh=args.command in CONTACT_NODES)
    module, function = COMMANDS[args.command]
    handler: Handler = getattr(importlib.import_module(f"keysyncd.commands.{module}"), function)
    return handler(args, config, out)


def _run_daemon(args: argparse.Namespace, config: Config) -> int:
    from keysyncd.commands.daemon import Daemon  # the scheduler, SSH and metrics: only here
    from keysyncd.commands.logs import setup_logging
    from keysyncd.io.remote.preflight import check_local_files

    check_local_files(config, ssh=True)
    setup_logging(args.debug, args.log_format, daemon=True, verbosity=args.verbose - args.quiet)
    return Daemon(config_path(args.config), config).run()
