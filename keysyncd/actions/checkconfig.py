"""check-config: every check that needs no network, as findings: an error for what would make
an action fail later, a warning for what is unsafe but works. Nothing here writes."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from keysyncd.actions.inspect import algorithm_change, lint_repository
from keysyncd.config import Config
from keysyncd.errors import ConfigError, KeysyncError, LocalFileError
from keysyncd.io.local.hooktrust import RUN_DIRECTORY, trust_findings
from keysyncd.io.local.repolinks import resolve_id
from keysyncd.io.remote.preflight import local_file_problems
from keysyncd.io.runtime.children import UNIT_TIMEOUT_STOP_SEC

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One finding: ``check`` names the kind, ``message`` where and what to do."""

    severity: str
    check: str
    message: str

    def to_json(self) -> dict[str, Any]:
        """Return the finding as a JSON-ready dict."""
        return asdict(self)


def config_findings(config: Config, now: float) -> list[Finding]:
    """Return every finding for ``config`` at time ``now``, errors first (empty: all good)."""
    findings = [Finding(ERROR, "trust", problem) for problem in trust_findings(config)]
    findings += [Finding(ERROR, "local_files", problem) for problem in local_file_problems(config)]
    checks = (_ssh_findings, _id_findings, _hook_findings, _hook_stop_findings, _migration_findings)
    findings += [finding for check in checks for finding in check(config)]
    findings += _lint_findings(config, now) + _algorithm_findings(config)
    return sorted(findings, key=lambda finding: finding.severity != ERROR)


def _ssh_findings(config: Config) -> list[Finding]:
    if not config.nodes:
        return []
    found = _known_hosts_findings(config)
    if config.ssh.identity_file is None and not os.environ.get("SSH_AUTH_SOCK"):
        message = (
            "At 'ssh.identity_file': not set, and no ssh-agent is reachable "
            "($SSH_AUTH_SOCK is unset): set identity_file to the controller's key"
        )
        found.insert(0, Finding(ERROR, "identity", message))
    return found


def _known_hosts_findings(config: Config) -> list[Finding]:
    """Return a finding for each node known_hosts does not list (revoked keys not counting)."""
    path = config.ssh.known_hosts
    if path is None:
        return []
    from keysyncd.io.remote.knownhosts import load_known_hosts  # paramiko: only with nodes

    try:
        known = load_known_hosts(path)
    except LocalFileError:
        return []  # local_file_problems reported it already
    found = []
    for index, node in enumerate(config.nodes):
        # as OpenSSH names hosts in known_hosts (and keysyncd.io.remote.ssh looks them up)
        name = node.host if node.port == 22 else f"[{node.host}]:{node.port}"
        if not known.lookup(name):
            message = (
                f"At 'nodes[{index}]' ({node.name}): known_hosts {path} has no usable "
                f"host key for {name} ({known.why_unusable(name)}): add the node's host "
                "key (the Ansible role reads it from the node), or fix its host and port"
            )
            found.append(Finding(ERROR, "known_hosts", message))
    return found


def _id_findings(config: Config) -> list[Finding]:
    found = []
    for index, repository in enumerate(config.repositories):
        for key, lookup in (("owner", "user"), ("group", "group")):
            try:
                resolve_id(getattr(repository, key), lookup)
            except ConfigError as error:
                where = f"repositories[{index}].{key}"
                message = f"At '{where}': {error}: create it, or give the numeric id"
                found.append(Finding(ERROR, key, message))
    return found


def _hook_findings(config: Config) -> list[Finding]:
    found = []
    for index, repository in enumerate(config.repositories):
        hooks = repository.hooks
        for event in ("before_rotate", "after_rotate", "on_failure"):
            for number, argv in enumerate(getattr(hooks, event)):
                problem = _not_runnable(argv[0])
                if problem:
                    where = f"repositories[{index}].hooks.{event}[{number}]"
                    found.append(Finding(ERROR, "hook", f"At '{where}': {problem}"))
    return found


def _hook_stop_findings(config: Config) -> list[Finding]:
    """Return a warning where hooks may outlast systemd's stop timeout (SPEC rule 9)."""
    found = []
    for index, repository in enumerate(config.repositories):
        hooks = repository.hooks
        if hooks.timeout > UNIT_TIMEOUT_STOP_SEC and (
            hooks.before_rotate or hooks.after_rotate or hooks.on_failure
        ):
            message = (
                f"At 'repositories[{index}].hooks.timeout' ({repository.name}): "
                f"{hooks.timeout:g}s is longer than the unit's TimeoutStopSec "
                f"({UNIT_TIMEOUT_STOP_SEC:g}s): a stop during such a hook ends it, and an "
                "after_rotate that did not finish leaves the repository blocked until it succeeds"
            )
            found.append(Finding(WARNING, "hook_timeout", message))
    return found


def _not_runnable(command: str) -> str | None:
    """Return why ``command`` cannot be run here, or None when it can."""
    if "/" in command:
        path = os.path.join(RUN_DIRECTORY, command)  # where hooks run (io/hooks.py)
        runnable = os.path.isfile(path) and os.access(path, os.X_OK)
        return None if runnable else f"command {command!r} does not exist or is not executable"
    import shutil  # here: only hooks need it (with its compression modules, 2 ms to load)

    if shutil.which(command) is not None:
        return None
    return f"command {command!r} is not found in PATH ({os.environ.get('PATH', '')})"


def _migration_findings(config: Config) -> list[Finding]:
    """Return a warning where keys retire by migration but no after_rotate hook runs it."""
    return [
        Finding(
            WARNING,
            "migration",
            f"{repository.name}: kind {repository.kind} without an after_rotate hook: no key "
            "is ever retired until you run keystone-manage credential_migrate once every node "
            "holds the new primary, then keysyncd confirm-migration --repo "
            f"{repository.name} --primary N (or set hooks.after_rotate to the migration)",
        )
        for repository in config.repositories
        if repository.key_kind.retire_by == "migration" and not repository.hooks.after_rotate
    ]


def _algorithm_findings(config: Config) -> list[Finding]:
    """Return a warning where ``algorithm`` is not the one the keys were made for."""
    found = []
    for index, repository in enumerate(config.repositories):
        if "algorithm" in repository.key_kind.fields and (
            change := algorithm_change(config, repository)
        ):
            where = f"At 'repositories[{index}].algorithm' ({repository.name})"
            found.append(Finding(WARNING, "algorithm", f"{where}: {change}"))
    return found


def _lint_findings(config: Config, now: float) -> list[Finding]:
    found = []
    for repository in config.repositories:
        if not repository.key_kind.sized:
            continue  # max_active_keys does not size it: nothing to lint
        try:
            warnings = lint_repository(repository, now)
        except KeysyncError as error:
            warnings = [str(error)]
        found += [Finding(WARNING, "lint", f"{repository.name}: {w}") for w in warnings]
    return found
