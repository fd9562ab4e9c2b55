"""What ``adopt`` takes over, and what it must not take on one node's word (SPEC safety rule
14). Pure. A JWS public key is adopted only as the public half of a node's private key or if
every node holds it; anything else is named and removed by the next sync. Fernet and
credential keys are taken as the source holds them, naming nodes the next sync overwrites.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from keysyncd.core.changewords import describe_changes
from keysyncd.core.names import show_name
from keysyncd.core.nodeplan import MAX_LISTED, NodePlan
from keysyncd.core.text import bounded, plural

KEY_CHANGES = ("missing", "changed", "extra", "entries", "unlisted")  # not modes or owners


@dataclass(frozen=True)
class Adopted:
    """What adopt did for one repository: ``what`` in words (``keys [0, 1, 2]``), ``warnings`` (one
    line each, names escaped) and ``details`` for the report and ``--json``."""

    what: str
    warnings: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class PublicJudgement:
    """The source's public keys split: ``adopted`` (file name -> PEM) and ``refused`` (file
    name -> why it is not adopted)."""

    adopted: Mapping[str, bytes]
    refused: Mapping[str, str]


def judge_publics(
    offered: Mapping[str, bytes],
    signers: Mapping[str, bytes],
    held: Mapping[str, Sequence[bytes]],
    nodes: Collection[str],
    same: Callable[[bytes, bytes], bool],
) -> PublicJudgement:
    """Return which ``offered`` public keys (name -> PEM) may be adopted: the public half of a
    node's private key (``signers``), or held by every one of ``nodes`` (``held``: node -> its
    keys; a node missing there was not read). ``same`` says whether two PEMs are one key."""
    adopted: dict[str, bytes] = {}
    refused: dict[str, str] = {}
    for name, content in sorted(offered.items()):
        if any(same(content, public) for public in signers.values()):
            adopted[name] = content
            continue
        unread = sorted(node for node in nodes if node not in held)
        lacking = sorted(
            n for n in nodes if n in held and not any(same(content, k) for k in held[n])
        )
        if not unread and not lacking:
            adopted[name] = content
            continue
        why = "no node's private key matches it"
        why += f"; not held by {', '.join(lacking)}" if lacking else ""
        why += f"; not read: {', '.join(unread)}" if unread else ""
        refused[name] = why
    return PublicJudgement(MappingProxyType(adopted), MappingProxyType(refused))


def refused_publics(source: str, refused: Mapping[str, str]) -> tuple[list[str], dict[str, Any]]:
    """Return (warnings, report details) for public keys not adopted from ``source``: their
    names escaped, at most MAX_LISTED of them listed (a node may hold thousands)."""
    if not refused:
        return [], {"not_adopted": []}
    listed = sorted(refused)[:MAX_LISTED]
    names = [show_name(name) for name in sorted(refused)]
    warning = (
        f"not adopted from node {source}, and removed from every node by the next sync: "
        f"{plural(len(refused), 'public key file')} no node's private key matches and not every "
        f"node holds: {bounded(names)}"
    )
    details: dict[str, Any] = {
        "not_adopted": [{"name": show_name(name), "reason": refused[name]} for name in listed]
    }
    if len(refused) > len(listed):
        details["not_adopted_unlisted"] = len(refused) - len(listed)
    return [warning], details


def key_differences(plan: NodePlan, diverged: str | None) -> dict[str, Any]:
    """Return how a node's keys differ from the source's (its plan made with ``force``;
    ``diverged``: why it would be left alone): key ids and odd entries, not modes or owners."""
    found = {key: value for key, value in plan.changes().items() if key in KEY_CHANGES}
    if diverged:
        found["diverged"] = diverged
    return found


def differing_nodes(source: str, differing: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Return one warning per node whose keys differ from ``source``'s (``differing``: node
    -> its key_differences, or ``{"error": why}`` for a node that could not be read)."""
    lines = []
    for node, changes in sorted(differing.items()):
        if "error" in changes:
            lines.append(
                f"node {node} could not be compared with node {source} ({changes['error']}); "
                "the next sync gives it the adopted keys"
            )
        else:
            lines.append(
                f"node {node}'s keys differ from node {source}'s ({describe_changes(changes)}); "
                "the next sync overwrites them with the adopted keys"
            )
    return lines
