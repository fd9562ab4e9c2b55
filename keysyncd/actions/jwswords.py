"""What a JWS write action says: messages, ``details.jws``, the dry run's words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from keysyncd.actions.context import Run
from keysyncd.actions.jwsload import Keys
from keysyncd.core import jws as model
from keysyncd.core.clock import ClockCheck
from keysyncd.core.jwsconverge import ConvergePlan
from keysyncd.core.report import NodeOutcome
from keysyncd.core.text import bounded, plural, printable

if TYPE_CHECKING:
    from keysyncd.actions.jws import Options

MAX_NAMED = 5  # failed nodes named one by one in an init's messages


@dataclass(frozen=True)
class Summary:
    """What a run did, for its messages and details."""

    options: Options
    plan: ConvergePlan
    clock: ClockCheck
    unverified: list[str]
    install: frozenset[str]
    installed: list[str]
    dropped: tuple[str, ...]  # public keys of the former algorithm removed now
    algorithm: str  # the configured one


def messages(keys: Keys, summary: Summary) -> list[str]:
    messages = []
    if summary.options.rotate and not summary.clock.trusted:
        messages.append(
            "deferred: no new key pair and no private key replaced: the controller's clock "
            "is not trusted (see below)"
        )
    if summary.installed:
        messages.append("installed new private keys on " + bounded(sorted(summary.installed)))
    deferred = bool(keys.pairs.next and summary.unverified and not summary.install)
    if deferred and not summary.options.init:  # an init says it node by node (init_messages)
        waiting = bounded(sorted(keys.pairs.next))
        messages.append(
            f"deferred: no private key changed anywhere; not every node holds the "
            f"new public keys: {', '.join(summary.unverified)} (waiting: {waiting})"
        )
    elif not deferred and summary.unverified and summary.options.force:
        messages.append(
            "FORCED: private keys installed although these nodes were not "
            "verified: " + ", ".join(summary.unverified)
        )
    exposed = list(summary.plan.exposed)  # of rekey: the right key, but open to others
    foreign = [name for name in summary.plan.rekey if name not in exposed]
    if foreign:
        messages.append(
            f"private.pem was not keysyncd's on {bounded(foreign)}: a new pair replaces it"
        )
    if exposed:
        messages.append(
            "private.pem had a wrong mode or owner (others may have read it) on "
            f"{bounded(exposed)}: a new pair replaces it"
        )
    if summary.plan.retire:
        messages.append(
            f"retired public keys {bounded(list(summary.plan.retire))}: no live token can need them"
        )
    return messages


def algorithm_messages(keys: Keys, summary: Summary) -> list[str]:
    """Return what this run did about a change of algorithm, and what is still to do."""
    if not summary.plan.former:
        return []
    former, configured = summary.plan.former, summary.algorithm
    lines = []
    if summary.dropped:
        lines.append(
            f"algorithm changed {former} -> {configured}: the {former} public keys "
            f"{bounded(list(summary.dropped))} left every node; tokens signed with {former} "
            f"are no longer valid: keystone must run with [jwt_tokens] jws_algorithm = "
            f"{configured} on every node now"
        )
    left = sorted(
        node
        for node, pair in keys.pairs.signing.items()
        if keys.scan.algorithms.get(pair.public, configured) != configured
    )
    if left and keys.pairs.next:
        lines.append(
            f"algorithm change {former} -> {configured} under way: still signing with "
            f"{former} on {bounded(left)}; the {former} public keys stay until every node "
            f"has its {configured} pair installed (keystone fails tokens while both are there)"
        )
    elif left:
        lines.append(model.migration_notice(former, configured))
    return lines


def init_messages(run: Run, nodes: dict[str, NodeOutcome], summary: Summary) -> list[str]:
    """Return what an init did on each node, unless it did everything."""
    names = run.node_names
    if set(summary.installed) == set(names):
        return []
    failed = [name for name in names if nodes.get(name) and nodes[name].error is not None]
    signing = sorted(summary.installed)
    waiting = [name for name in names if name not in signing and name not in failed]
    lines = [
        f"init failed on {name}: {printable(nodes[name].error or '', 300)}"
        for name in failed[:MAX_NAMED]
    ]
    if len(failed) > MAX_NAMED:
        more = plural(len(failed) - MAX_NAMED, "more node")
        lines.append(f"init failed on {more} (see below)")
    if signing:
        lines.append("a key pair is installed on " + bounded(signing))
    if waiting:
        lines.append(
            f"no private key installed on {bounded(waiting)}: none is, until every node holds "
            "every node's public key"
        )
    lines.append(
        "the new key pairs wait in the controller's store: once the failed nodes are fixed, "
        f"'keysyncd sync --repo {run.repository.name}' installs them"
    )
    return lines


def details(keys: Keys, summary: Summary) -> dict[str, object]:
    return {
        "public": keys.pairs.public_keys(),
        "signing": {n: p.public for n, p in sorted(keys.pairs.signing.items())},
        "waiting": {n: p.public for n, p in sorted(keys.pairs.next.items())},
        "retiring": {n: k.stopped_at for n, k in sorted(keys.pairs.retiring.items())},
        "installed": sorted(summary.installed),
        "retired": list(summary.plan.retire),
    }


def preview_messages(run: Run, plan: ConvergePlan) -> tuple[str, ...]:
    """Return what the dry run says of ``plan``."""
    messages = []
    if plan.new:
        messages.append("would make new key pairs for " + bounded(list(plan.new)))
    if plan.rekey:
        messages.append(
            f"private.pem is not keysyncd's on {bounded(list(plan.rekey))}: would make new pairs"
        )
    if plan.retire:
        messages.append("would retire public keys " + bounded(list(plan.retire)))
    configured = run.repository.algorithm
    if plan.former:
        messages.append(
            f"would give every node a {configured} pair and remove the {plan.former} public "
            f"keys: every token signed with {plan.former} becomes invalid"
            if plan.migrating
            else model.migration_notice(plan.former, configured)
        )
    return tuple(messages)
