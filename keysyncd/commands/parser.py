"""The command line's grammar: every command, option, help text and the exit-code table.

Light on purpose: ``keysyncd --help`` loads this module and argparse, nothing else of
keysyncd's (no config, no SSH, no scheduler). Shell completion and the man page are
generated from the parser built here, so they cannot drift from it.

Global options (``-c``, ``--debug``, ``--json``, ``-v``, ``-q``) are accepted before or after
the subcommand: each subcommand carries a copy whose value, when given, wins.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from keysyncd import __version__
from keysyncd.commands.exits import exit_code_lines

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a --help cost)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any, NoReturn

# keysyncd.config.model.DEFAULT_PATH (a test keeps them equal): importing the config package
# would load YAML and the cron parser for every --help
DEFAULT_CONFIG = "/etc/keysyncd/config.yaml"
OUTCOMES = ("ok", "partial", "failed", "deferred")
VERIFY_WAIT = 300.0  # verify waits this long by default for a running action to finish
SHELLS = ("bash", "zsh")
# shtab's completion hints, spelled out so that building the parser does not import shtab
FILE_HINT = {"bash": "_shtab_compgen_files", "zsh": "_files"}

DESCRIPTION = """\
keysyncd keeps the key repositories of a fleet (keystone Fernet and credential keys, and
the JWS signing key pairs, one per node) in step: it rotates them on a schedule, pushes
every change atomically to each node over SFTP, proves by read-back that every node holds
exactly what keystone must load there, watches for drift, and writes an audit report for
everything it does."""

EPILOG = """\
The config file is -c, then $KEYSYNCD_CONFIG, then {default}.
Global options may come before or after the command.

exit codes:
{codes}
"""

GLOBAL_DESTS = ("config", "debug", "json", "verbose", "quiet")
PLAIN_GLOBALS = ("--debug", "--json", "-v", "--verbose", "-q", "--quiet")  # take no value


def terminal_columns() -> int:
    """Return ``shutil.get_terminal_size().columns`` without shutil, which argparse imports
    for each parser (with its compression modules: 2 ms of every start): ``$COLUMNS`` when a
    positive number, else the width of the terminal on stdout, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__  # None when Python runs without one
    try:
        return (stdout is not None and os.get_terminal_size(stdout.fileno()).columns) or 80
    except (AttributeError, ValueError, OSError):
        return 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, as wide as argparse makes it (the terminal's columns less 2)."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
        **more: Any,
    ) -> None:
        width = terminal_columns() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width, **more)


class RawDescriptionHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """argparse's, keeping the description's lines, as wide as ``HelpFormatter``."""


class UsageProblem(Exception):
    """The command line cannot be parsed (exit 2); the message says what is wrong."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, raising UsageProblem instead of exiting, so that the command line
    can still answer --json with a JSON document.

    Abbreviated options are refused: argparse would read ``rotate --fo`` as ``--force``,
    and a typo must never run a forced action (it gets a suggestion instead)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)  # the commands': argparse's own
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        command = self.prog.removeprefix("keysyncd").strip()  # "report list", or none
        raise UsageProblem(f"{command}: {message}" if command else message)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """argparse's check of a command or a choice, saying which one was probably meant.

        Our own rather than Python 3.14's ``suggest_on_error``: the same words on every
        supported Python (3.11 has none).
        """
        if action.choices is not None and value not in action.choices:
            choices = [str(choice) for choice in action.choices]
            close = nearest(str(value), choices)
            if close is not None:
                listed = ", ".join(repr(choice) for choice in choices)
                raise argparse.ArgumentError(
                    action,
                    f"invalid choice: {value!r}, did you mean {close!r}? (choose from {listed})",
                )
        super()._check_value(action, value)


def nearest(word: str, candidates: list[str]) -> str | None:
    """Return the candidate ``word`` is probably a typo of, or None when none is close."""
    import difflib  # only on a usage error: --help does not pay for it

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def option_hint(parser: argparse.ArgumentParser, argv: list[str], extras: list[str]) -> str:
    """Return `` (did you mean --dry-run?)`` for the first unrecognized option of ``argv``
    that is close to an option of the command it was given to, or an empty string."""
    current = parser
    for word in argv:  # the innermost command named on the line
        current = subcommands(current).get(word, ("", current))[1]
    options = [o for action in current._actions for o in action.option_strings]
    for extra in extras:
        if extra.startswith("-"):
            name = extra.split("=", 1)[0]
            close = nearest(
                name, [o for o in options if o.startswith("--") == name.startswith("--")]
            )
            if close is not None:
                return f" (did you mean {close}?)"
    return ""


class _Trial(Parser):
    """A parser that fails without a word (``parse`` then asks the whole parser)."""

    def error(self, message: str) -> NoReturn:
        raise UsageProblem(message)


def build_parser(
    groups: dict[Callable[[Any], None], tuple[str, ...]] | None = None,
    parser_class: type[Parser] = Parser,
) -> argparse.ArgumentParser:
    """Return the argument parser for every command (see the module docstring), or for
    those of ``groups`` (``parse`` tries the named command's group alone first)."""
    codes = None if groups else "\n".join(exit_code_lines())  # help text: a trial shows none
    parser = parser_class(
        prog="keysyncd",
        description=DESCRIPTION,
        epilog=codes and EPILOG.format(default=DEFAULT_CONFIG, codes=codes),
        formatter_class=RawDescriptionHelpFormatter,
    )
    _global_options(parser, top=True)
    parser.add_argument(
        "--version",
        action="version",
        version=f"keysyncd {__version__}",
        help="print the version and exit",
    )
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        title="commands",
        help="`keysyncd COMMAND --help` shows its options",
    )
    for group in GROUPS if groups is None else groups:
        group(commands)
    return parser


# the global options but -c: (flags, action, help)
GLOBAL_FLAGS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("--debug",), "store_true", "debug logs, library logs and tracebacks"),
    (
        ("--json",),
        "store_true",
        "print the result as one JSON document on stdout, and nothing else there",
    ),
    (("-v", "--verbose"), "count", "more detail: keysyncd's debug logs (without tracebacks)"),
    (
        ("-q", "--quiet"),
        "count",
        "print nothing but errors (the exit code tells the rest; --json still prints)",
    ),
)


def _global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """Add -c, --debug, --json, -v, -q; a subcommand's copies leave the value unset unless
    given (argparse.SUPPRESS), so the one given before the command is not overwritten."""
    group = parser.add_argument_group("global options")
    keep: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    prefix = "" if top else "sub_"
    config = group.add_argument(
        "-c",
        "--config",
        dest=f"{prefix}config",
        type=_path,
        metavar="FILE",
        help=f"config file (default: $KEYSYNCD_CONFIG, then {DEFAULT_CONFIG})",
        **keep,
    )
    config.complete = FILE_HINT  # type: ignore[attr-defined]  # read by shtab
    for flag, action, words in GLOBAL_FLAGS:
        default = {"default": 0} if top and action == "count" else keep
        group.add_argument(
            *flag, dest=f"{prefix}{flag[-1][2:]}", action=action, help=words, **default
        )


def _command(
    commands: Any,
    name: str,
    summary: str,
    description: str,
    repo: bool = True,
    wait: float | None = None,
) -> argparse.ArgumentParser:
    """Add one command with its help, description and the global options."""
    sub: argparse.ArgumentParser = commands.add_parser(name, help=summary, description=description)
    if repo:
        sub.add_argument("--repo", metavar="NAME", help="only this repository (default: all)")
    if wait is not None:
        sub.add_argument(
            "--wait",
            type=_seconds,
            default=wait,
            metavar="SECONDS",
            help=f"wait up to SECONDS for another keysyncd's action to finish (default {wait:g})",
        )
    _global_options(sub, top=False)
    return sub


def _check_config(commands: Any) -> None:
    check = _command(
        commands,
        "check-config",
        "check the config and every local file it names, without the network",
        "Validate the config file, then run every check that needs no network: the state and "
        "report directories, the identity file and known_hosts are safe and load; every node "
        "has a known_hosts entry for its host and port; owner and group exist here; hook "
        "commands are found; max_active_keys is large enough for the schedule (a warning). "
        "Errors exit 2; warnings are printed and exit 0 (1 with --strict).",
        repo=False,
    )
    check.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")


def _init_and_adopt(commands: Any) -> None:
    init = _command(
        commands,
        "init",
        "create the repositories (like keystone-manage fernet_setup) and push them",
        "Create keys 0 and 1 in each repository (kind jws: a key pair per node), then push "
        "them to every node. Refuses a repository that already holds keys, and refuses when "
        "any reachable node already holds keys (use adopt then).",
        wait=0.0,
    )
    init.add_argument("--dry-run", action="store_true", help="check everything, change nothing")
    adopt = _command(
        commands,
        "adopt",
        "take over the keys of a node as the controller's repository",
        "Read the keys of NODE (a live keystone node) into the controller's empty repository, "
        "instead of init. Then run sync to push them to every node.",
        wait=0.0,
    )
    adopt.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="NODE",
        help="the configured node whose keys become the controller's",
    )
    adopt.add_argument("--dry-run", action="store_true", help="read everything, change nothing")


def _rotate_sync(commands: Any) -> None:
    """Add rotate and sync."""
    rotate = _command(
        commands,
        "rotate",
        "rotate now: verify every node, promote the staged key, push, verify",
        "Rotate like keystone-manage fernet_rotate, safely: every node is first verified to "
        "hold the staged key (else the rotation is deferred, exit 1), keys are retired only "
        "when no live token can need them, and the result is pushed and read back. Kind jws: "
        "a new pair per node, its public key on every node before any node signs with it. "
        "Prints the report id.",
        wait=0.0,
    )
    rotate.add_argument(
        "--dry-run", action="store_true", help="show what would happen; change nothing"
    )
    rotate.add_argument(
        "--force",
        action="store_true",
        help="rotate even if some node cannot be verified (the report says FORCED)",
    )
    sync = _command(
        commands,
        "sync",
        "push the repositories to the nodes and verify them by read-back",
        "Push each repository to every node (or one) in two phases and read it back.",
        wait=0.0,
    )
    sync.add_argument("--node", metavar="NAME", help="only this node (default: all)")
    sync.add_argument(
        "--force", action="store_true", help="also overwrite nodes that hold diverged keys"
    )
    sync.add_argument(
        "--dry-run", action="store_true", help="show what would change; change nothing"
    )


def _revoke(commands: Any) -> None:
    """Add revoke (every kind: a key, or for jws a node's pair)."""
    revoke = _command(
        commands,
        "revoke",
        "remove a leaked key from every node now",
        "Revoke a leaked key: the staged key is replaced on every node; a primary is replaced "
        "by the staged key (promoted once every node holds it) and deleted at once, without the "
        "retention wait; a secondary is deleted now. Tokens made with it are rejected on every "
        "node, every other token stays valid. Credential keys go only after after_rotate "
        "(keystone-manage credential_migrate) succeeded. The revocation is journaled first, "
        "blocks rotation until finished, and its key is never pushed again. Without --key or "
        "--index: finish the revocation under way. Kind jws: --node NODE gives that node a new "
        "key pair now (its public key on every node first) and then removes its old public key "
        "from every node at once; --all (with --force) does it for every node.",
        repo=False,
        wait=0.0,
    )
    revoke.add_argument("--repo", metavar="NAME", required=True, help="the repository")
    which = revoke.add_mutually_exclusive_group()
    which.add_argument(
        "--key", metavar="DIGEST_PREFIX", help="the key's sha256, as status shows it"
    )
    which.add_argument("--index", type=int, metavar="N", help="the key's index (0: staged)")
    which.add_argument(
        "--all",
        action="store_true",
        help="a brand-new key set (jws: a pair for every node): every token dies; needs --force",
    )
    which.add_argument("--node", metavar="NODE", help="kind jws: the node whose key pair leaked")
    revoke.add_argument("--reason", metavar="TEXT", help="why (required; recorded in the report)")
    revoke.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
    revoke.add_argument(
        "--force",
        action="store_true",
        help="promote although a node cannot be verified; delete a credential key although "
        "the migration failed (credentials still encrypted with it are lost)",
    )


def _verify(commands: Any) -> None:
    """Add verify."""
    verify = _command(
        commands,
        "verify",
        "read every node and compare it with the controller (changes no key)",
        "Read every node (or one) and compare it with the controller. Changes no key; it "
        "records each node's status and writes a report, so it waits (--wait) for a running "
        "action, such as the daemon's rotation, to finish.",
        wait=VERIFY_WAIT,
    )
    verify.add_argument("--node", metavar="NAME", help="only this node (default: all)")


def _confirm_migration(commands: Any) -> None:
    """Add confirm-migration (kind credential)."""
    confirm = _command(
        commands,
        "confirm-migration",
        "record that every credential was migrated to a key (kind credential)",
        "Credential keys are retired only after a migration (keystone-manage "
        "credential_migrate) that started once every node held the new primary. An "
        "after_rotate hook records that by itself; without one (or after migrating by hand "
        "while the hook fails), run the migration, then this command: it reads every node, "
        "refuses unless every node holds the current keys and PRIMARY is the current primary, "
        "and records the migration. Keys below it are retired at the next sync or rotation.",
        repo=False,
        wait=0.0,
    )
    confirm.add_argument("--repo", metavar="NAME", required=True, help="the repository")
    confirm.add_argument(
        "--primary",
        type=int,
        required=True,
        metavar="N",
        help="the current primary, which the migration encrypted every credential with",
    )


def _views(commands: Any) -> None:
    _command(
        commands,
        "status",
        "show keys, generations, node status and the running daemon",
        "Show each repository's keys (digests only), generation, last and next rotation, "
        "each node's last status, and the running daemon. Exits 1 when a node is not in "
        "sync, a rotation is blocked or overdue, or the repository has problems.",
    )
    _command(
        commands,
        "plan",
        "show each key's lifecycle on the schedule and lint max_active_keys",
        "Show when each key will be staged, primary, secondary and retired on the schedule, "
        "which keys are kept beyond max_active_keys and why, and whether max_active_keys is "
        "large enough (keystone's rule).",
    )


def _report(commands: Any) -> None:
    report = _command(
        commands,
        "report",
        "list, show and check the audit reports",
        "The audit reports in report_dir: one JSON document per action, hash-chained.",
        repo=False,
    )
    reports = report.add_subparsers(
        dest="report_command",
        required=True,
        metavar="SUBCOMMAND",
        title="subcommands",
        help="what to do with the reports",
    )
    listing = _command(
        reports, "list", "one line per report, oldest first", "List the reports.", repo=False
    )
    listing.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only since WHEN: a date, an RFC 3339 time or an age such as 3d, 12h, 30m",
    )
    listing.add_argument("--outcome", choices=OUTCOMES, help="only reports with this outcome")
    listing.add_argument("--repo", metavar="NAME", help="only reports of this repository")
    show = _command(
        reports, "show", "one report in full", "Show one report with a line per node.", repo=False
    )
    show.add_argument("id", metavar="ID", help="report id (a unique prefix is enough)")
    _command(
        reports,
        "verify-chain",
        "check that no report was edited or deleted",
        "Walk the hash chain of the reports; exit 1 naming every report that was edited or "
        "deleted outside retention.",
        repo=False,
    )


def _daemon_and_docs(commands: Any) -> None:
    run = _command(
        commands,
        "run",
        "run the daemon in the foreground (systemd Type=notify)",
        "Run the daemon: rotate on each repository's schedule, watch for drift, verify every "
        "node periodically, serve metrics. SIGUSR1 rotates now, SIGUSR2 syncs and verifies "
        "now, SIGHUP reloads the config, SIGTERM (exit 0) and SIGINT (exit 130) stop after "
        "the current step.",
        repo=False,
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text (journald priorities under systemd) or one JSON object each",
    )
    completion = _command(
        commands,
        "completion",
        "print the shell completion script for bash or zsh",
        "Print a completion script generated from this command line (shtab). Install it as "
        "/usr/share/bash-completion/completions/keysyncd (bash) or as _keysyncd in a "
        "directory of $fpath (zsh).",
        repo=False,
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete for")
    _command(
        commands,
        "manpage",
        "print the manual page (roff), generated from this command line",
        "Print keysyncd(1) in roff, e.g. keysyncd manpage > /usr/local/share/man/man1/keysyncd.1",
        repo=False,
    )


def _path(value: str) -> Path:
    """Return ``value`` as a Path (pathlib is imported only when a path is given)."""
    from pathlib import Path

    return Path(value)


def _seconds(value: str) -> float:
    """Return a non-negative number of seconds; raise ArgumentTypeError otherwise."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 <= seconds < 1e9:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1e9 seconds: {value!r}")
    return seconds


def _since(value: str) -> float:
    """Return an epoch time from ``2026-11-22``, ``2026-11-22T10:00:00Z`` or an age (``3d``)."""
    from datetime import UTC, datetime

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1:] in units:
        return time.time() - int(value[:-1]) * units[value[-1]]
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or an age: {value!r}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def merge_globals(args: argparse.Namespace) -> argparse.Namespace:
    """Fold the global options given after the command into ``args`` (after wins; -v and -q
    add up) and drop the copies."""
    for dest in GLOBAL_DESTS:
        sub = f"sub_{dest}"
        if not hasattr(args, sub):
            continue
        value = getattr(args, sub)
        delattr(args, sub)
        if dest in ("verbose", "quiet"):
            setattr(args, dest, getattr(args, dest) + value)
        elif dest == "config":
            setattr(args, dest, value)
        else:
            setattr(args, dest, getattr(args, dest) or value)
    return args


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Return the parsed command line; raise UsageProblem if it cannot be parsed (argparse
    still exits 0 itself for --help and --version).

    A parser of the named command's group alone is tried first (building every command's
    is a start-up cost); what it cannot parse the whole parser parses and answers, so every
    message, help and error, is the whole parser's."""
    given = sys.argv[1:] if argv is None else argv
    if (group := named_group(given)) is not None:
        with contextlib.suppress(UsageProblem):
            args, extras = build_parser({group: GROUPS[group]}, _Trial).parse_known_args(given)
            if not extras:
                return merge_globals(args)
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # what parse_args would say, with the option probably meant
        parser.error(
            f"unrecognized arguments: {' '.join(extras)}{option_hint(parser, given, extras)}"
        )
    return merge_globals(args)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """Return name -> (one-line help, parser) for the commands of ``parser`` (in order)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return {name: (helps.get(name, ""), sub) for name, sub in action.choices.items()}
    return {}


def named_group(argv: list[str]) -> Callable[[Any], None] | None:
    """Return the group of commands that adds the command ``argv`` names, or None when
    ``argv`` asks for help or the version, or when the command is not plain to see: no
    word but a global option and its value (``-c FILE``) before it."""
    for word in argv:
        short = word.startswith("-") and not word.startswith("--")
        if word in ("--help", "--version") or (short and "h" in word):  # -h, -vh too
            return None
    words = iter(argv)
    for word in words:
        if word in ("-c", "--config"):
            next(words, None)
        elif not (word.startswith("--config=") or word in PLAIN_GLOBALS):
            return next((group for group, names in GROUPS.items() if word in names), None)
    return None


# each group of commands, in the order --help lists them, and the commands it adds
GROUPS: dict[Callable[[Any], None], tuple[str, ...]] = {
    _check_config: ("check-config",),
    _init_and_adopt: ("init", "adopt"),
    _rotate_sync: ("rotate", "sync"),
    _verify: ("verify",),
    _confirm_migration: ("confirm-migration",),
    _revoke: ("revoke",),
    _views: ("status", "plan"),
    _report: ("report",),
    _daemon_and_docs: ("run", "completion", "manpage"),
}
