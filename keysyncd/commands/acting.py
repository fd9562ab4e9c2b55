"""The commands that act (init, adopt, rotate, sync, verify, confirm-migration, revoke): each runs
every chosen repository on its own under the lock and exits 0 only when all is well."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict
from functools import partial
from typing import Any

from keysyncd.actions import drift, operations
from keysyncd.actions.context import ActionResult, Run
from keysyncd.actions.operations import RepositoryRun, each_repository
from keysyncd.actions.preview import plan_json
from keysyncd.commands import render
from keysyncd.commands.exits import Exit
from keysyncd.commands.output import Output
from keysyncd.commands.views import chosen
from keysyncd.config import Config
from keysyncd.core.report import json_times
from keysyncd.core.text import plural
from keysyncd.core.vocabulary import Outcome, Trigger
from keysyncd.errors import LockError, UsageError
from keysyncd.io.local.lock import describe_holder, exclusive

Show = Callable[[str, ActionResult], list[str]]


@contextlib.contextmanager
def locked(config: Config, args: argparse.Namespace, action: str, out: Output) -> Iterator[None]:
    """Hold the lock (not for a dry run), waiting up to ``--wait``; raise LockError if busy."""
    if getattr(args, "dry_run", False):
        yield
        return
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive(config.state_dir, action, 0.0))
        except LockError as busy:
            if args.wait <= 0:
                raise LockError(
                    f"{busy}; retry when it has finished, or pass --wait SECONDS"
                ) from None
            holder = describe_holder(config.state_dir / "lock")
            out.note(f"waiting up to {args.wait:g}s for {holder} to finish")
            try:
                stack.enter_context(exclusive(config.state_dir, action, args.wait))
            except LockError as still:
                raise LockError(f"{still}; retry later, or pass a longer --wait") from None
        yield


def run_each(
    args: argparse.Namespace,
    config: Config,
    out: Output,
    action: str,
    act: Callable[[Run], ActionResult],
    show: Show | None = None,
) -> int:
    """Run ``act`` on every chosen repository under the lock; print; return the exit code."""
    with locked(config, args, action, out):
        runs = each_repository(
            chosen(config, args.repo),
            lambda repository: Run(config, repository, Trigger.CLI, progress=out.progress()),
            lambda run: [act(run)],
        )
    return finish(runs, action, out, show or (lambda name, got: render.action(name, action, got)))


def finish(runs: list[RepositoryRun], action: str, out: Output, show: Show) -> int:
    """Print each repository's result (or error) and a summary; return the exit code."""
    code = Exit.DONE if all(run.ok for run in runs) else Exit.ATTENTION
    for run in runs:
        for result in run.results:
            out.lines(show(run.repository, result))
        if run.error is not None:
            text = str(run.error)  # some errors already start with the repository's name
            prefix = f"{run.repository}: "
            out.error(text if text.startswith(prefix) else prefix + text)
    if len(runs) > 1:
        out.lines(f"summary: {run.summary()}" for run in runs)  # one each, as borgmatic does
    out.document(runs_json(action, runs, code))
    return int(code)


def runs_json(action: str, runs: list[RepositoryRun], code: int) -> dict[str, Any]:
    """Return the --json document of an acting command (each node once, in its result)."""
    reports = [
        {key: value for key, value in r.report.to_json().items() if key != "nodes"}
        for run in runs
        for r in run.results
        if r.report
    ]
    return {
        "action": action,
        "exit_code": code,
        "reports": reports,
        "errors": {run.repository: str(run.error) for run in runs if run.error is not None},
        "repositories": [
            {
                "name": run.repository,
                "outcome": run.outcome,
                "ok": run.ok,
                "error": None if run.error is None else str(run.error),
                "results": [result_json(result) for result in run.results],
            }
            for run in runs
        ],
    }


def result_json(result: ActionResult) -> dict[str, Any]:
    """Return one action's result as JSON."""
    return {
        "outcome": result.outcome,
        "report_id": result.report.id if result.report else None,
        "report_error": result.report_error,
        "messages": list(result.messages),
        "rotation": plan_json(result.rotation) if result.rotation else None,
        "plan": None if result.plan is None else json_times(dict(result.plan)),
        "preview": {node: dict(changes) for node, changes in result.preview.items()},
        "nodes": {name: asdict(node) for name, node in result.nodes.items()},
    }


def cmd_init(args: argparse.Namespace, config: Config, out: Output) -> int:
    def show(name: str, result: ActionResult) -> list[str]:
        repository = config.repository(name)
        done = (
            f"{name}: initialised a key pair for each of {plural(len(config.nodes), 'node')}"
            if repository.key_kind.pairs_per_node
            else f"{name}: initialised {repository.path} with keys 0 and 1"
        )
        if result.report is None:
            done = f"{name}: dry run"
        elif result.outcome != Outcome.OK:
            return render.action(name, "init", result)  # what happened where: its messages
        return [done, *render.action(name, "init", result)]

    return run_each(args, config, out, "init", partial(operations.init, dry_run=args.dry_run), show)


def cmd_adopt(args: argparse.Namespace, config: Config, out: Output) -> int:
    adopted = []
    with locked(config, args, "adopt", out):
        for repository in chosen(config, args.repo):
            run = Run(config, repository, Trigger.CLI, progress=out.progress())
            done = operations.adopt(run, args.source, args.dry_run)
            adopted.append(  # details: the plan, as the report of the real adopt records it
                {"name": repository.name, "adopted": done.what, "details": dict(done.details)}
            )
            said = "run 'keysyncd sync' to push them to every node"
            said = "dry run: nothing changed" if args.dry_run else said
            out.lines(
                [
                    f"{repository.name}: {'would adopt' if args.dry_run else 'adopted'} "
                    f"{done.what} from {args.source}; {said}",
                    *(f"{repository.name}: {warning}" for warning in done.warnings),
                ]
            )
    code = int(Exit.DONE)
    out.document(
        {"action": "adopt", "source": args.source, "repositories": adopted, "exit_code": code}
    )
    return code


def cmd_rotate(args: argparse.Namespace, config: Config, out: Output) -> int:
    rotate = partial(operations.rotate, dry_run=args.dry_run, force=args.force)
    return run_each(args, config, out, "rotate", rotate, render.rotation)


def cmd_sync(args: argparse.Namespace, config: Config, out: Output) -> int:
    if args.node:
        config.node(args.node)  # an unknown node is a usage error before anything runs
        for repository in chosen(config, args.repo):
            if repository.key_kind.pairs_per_node:
                raise UsageError(
                    f"{repository.name}: sync --node does not apply to kind {repository.kind}: "
                    "every node is synced together (a node's private key changes only once "
                    "every node holds its public key)"
                )
    sync = partial(operations.sync, node=args.node, force=args.force, dry_run=args.dry_run)
    return run_each(args, config, out, "sync", sync)


def cmd_verify(args: argparse.Namespace, config: Config, out: Output) -> int:
    # read-only on the nodes, but it records node status in the journal: one writer, so it
    # waits (--wait, 300 s by default) for a running action instead of failing
    if args.node:
        config.node(args.node)
    return run_each(args, config, out, "verify", partial(operations.verify, node=args.node))


def cmd_confirm_migration(args: argparse.Namespace, config: Config, out: Output) -> int:
    confirm = partial(drift.confirm_migration, primary=args.primary)
    return run_each(args, config, out, "confirm-migration", confirm)


def cmd_revoke(args: argparse.Namespace, config: Config, out: Output) -> int:
    from keysyncd.actions.revoke import Target, revoke_repository

    if config.repository(args.repo).key_kind.pairs_per_node:
        return revoke_pairs(args, config, out)
    from keysyncd.actions import revokeall

    digest = revoke_target(config, args)
    act: Callable[[Run], ActionResult]
    if args.all:  # a new key set (revoke_target checked --force)
        act = partial(
            revokeall.revoke_every_key, reason=args.reason, force=True, dry_run=args.dry_run
        )
    elif digest is None:  # finish the revocation under way, one key's or --all's
        act = partial(revokeall.finish_named, force=args.force, dry_run=args.dry_run)
    else:
        target = Target(digest, args.reason or "")
        act = partial(revoke_repository, target=target, force=args.force, dry_run=args.dry_run)
    return run_each(args, config, out, "revoke", act)


def revoke_pairs(args: argparse.Namespace, config: Config, out: Output) -> int:
    """Revoke JWS key pairs (``--node NODE`` or ``--all``); return the exit code."""
    from keysyncd.actions import jwsrevoke

    if args.key is not None or args.index is not None:
        raise UsageError(f"{args.repo}: kind jws: name the node (--node NODE) or --all, not a key")
    repository = config.repository(args.repo)
    run = Run(config, repository, Trigger.CLI)
    confirmed = args.force or args.dry_run  # --all: a dry run shows what dies, changing nothing
    target = jwsrevoke.name_target(run, args.node, args.all, args.reason or "", confirmed)
    revoke = partial(jwsrevoke.revoke_pairs, target=target, force=args.force, dry_run=args.dry_run)
    return run_each(args, config, out, "revoke", revoke)


def all_keys(config: Config, args: argparse.Namespace) -> None:
    """Check ``revoke --all`` (a new key set); raise UsageError (exit 2) saying what it kills
    unless --force and --reason are given, or a revocation is unfinished."""
    from keysyncd.actions.inspect import open_repository
    from keysyncd.core.newkeyset import every_token_dies
    from keysyncd.core.revocation import succeeds
    from keysyncd.io.local.state import load_state

    repository = config.repository(args.repo)
    name = repository.name
    if not (args.force or args.dry_run):  # a dry run shows what dies, changing nothing
        said = every_token_dies(repository.policy().retire_by)
        raise UsageError(f"{name}: {said}. Add --force to do it")
    if not (args.reason or "").strip():
        raise UsageError("revoke: --reason TEXT is required (it is recorded with the revocation)")
    held = open_repository(repository).scan().keyset.digests().values()
    succeeds(load_state(config.state_dir, name).revocation, (), held, name)  # UsageError


def revoke_target(config: Config, args: argparse.Namespace) -> str | None:
    """Return the full digest of the key ``args`` name (None: finish the revocation under way);
    raise UsageError (exit 2, one line) for what revoke does not do, or names no single key."""
    from keysyncd.actions.inspect import open_repository
    from keysyncd.core.revocation import select, succeeds
    from keysyncd.io.local.state import load_state

    repository = config.repository(args.repo)
    name = repository.name
    if args.all:
        all_keys(config, args)
        return None
    if args.node:
        raise UsageError(f"{name}: --node applies to kind jws only (a node's key pair)")
    pending = load_state(config.state_dir, name).revocation
    if args.key is None and args.index is None:
        if pending is None:
            raise UsageError(f"{name}: name the key to revoke: --key DIGEST_PREFIX or --index N")
        return None
    if not (args.reason or "").strip():
        raise UsageError("revoke: --reason TEXT is required (it is recorded with the revocation)")
    digests = open_repository(repository).scan().keyset.digests()
    also = [pending.digest] if pending is not None else []
    digest = select(digests, args.key, args.index, also)
    succeeds(pending, (digest,), digests.values(), name)  # UsageError: another is unfinished
    return digest
