"""Load the YAML configuration and validate it into frozen dataclasses: every problem with its
path (``At 'nodes[2].port': ...``), all in one ConfigError; unknown keys are errors, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import fields
from pathlib import Path, PurePosixPath
from typing import Any

from keysyncd.config import checks as check
from keysyncd.config import paths
from keysyncd.config.model import (
    ClockConfig,
    Config,
    DriftConfig,
    Hooks,
    MetricsConfig,
    NodeConfig,
    ReportsConfig,
    RepositoryConfig,
    SshConfig,
)
from keysyncd.core.kinds import KIND_FIELDS, KINDS, KeyKind
from keysyncd.errors import ConfigError


def _keys(section: type[Any]) -> set[str]:
    """Return the keys a config section takes: its dataclass's fields (``source`` aside)."""
    return {item.name for item in fields(section)} - {"source"}


_TOP_KEYS = _keys(Config)
# a kind's own fields are judged by _kind_fields: only the kinds that take them may have them
_REPOSITORY_KEYS = _keys(RepositoryConfig)


def _hooks(reader: check.Reader, value: Any, path: str) -> Hooks:
    data = reader.mapping(value, path, _keys(Hooks))
    return Hooks(
        before_rotate=check.commands(reader, data.get("before_rotate"), f"{path}.before_rotate"),
        after_rotate=check.commands(reader, data.get("after_rotate"), f"{path}.after_rotate"),
        on_failure=check.commands(reader, data.get("on_failure"), f"{path}.on_failure"),
        timeout=float(reader.get(data, "timeout", path, check.number(0), 300.0)),
    )


def _repository(reader: check.Reader, value: Any, path: str) -> RepositoryConfig | None:
    if not isinstance(value, dict):
        reader.fail(path, f"expected a mapping, got {check.type_name(value)}")
        return None
    data = reader.mapping(value, path, _REPOSITORY_KEYS)
    # an unknown kind is reported, and judged as the default one
    kind = KINDS[reader.get(data, "kind", path, check.choice(*sorted(KINDS)), "fernet")]
    schedule = reader.get(data, "schedule", path, check.schedule, "0 0 * * *")
    timezone = reader.get(data, "timezone", path, check.timezone, "UTC")
    _kind_fields(reader, data, path, kind)
    private_path = reader.get(data, "private_path", path, paths.directory)
    public_path = reader.get(data, "public_path", path, paths.directory)
    repository = RepositoryConfig(
        name=reader.get(data, "name", path, check.name, "", required=True),
        kind=kind.name,
        path=Path(reader.get(data, "path", path, paths.directory, "/", required=True)),
        max_active_keys=reader.get(
            data, "max_active_keys", path, check.integer(2), kind.default_max_active_keys
        ),
        schedule=schedule,
        timezone=timezone,
        token_expiration=reader.get(data, "token_expiration", path, check.integer(1), 3600),
        allow_expired_window=reader.get(
            data, "allow_expired_window", path, check.integer(0), 172800
        ),
        owner=reader.get(data, "owner", path, check.owner),
        group=reader.get(data, "group", path, check.owner),
        hooks=_hooks(reader, data.get("hooks"), f"{path}.hooks"),
        algorithm=reader.get(data, "algorithm", path, _algorithm, "ES256"),
        private_path=Path(private_path) if private_path else None,
        public_path=Path(public_path) if public_path else None,
    )
    if kind.pairs_per_node:
        _apart(reader, repository, path)
    return repository


def _algorithm(value: Any) -> str | None:
    """Return ``check.choice`` of keystone's JWS algorithms' verdict on ``value``: the list
    (``keysyncd.core.jws``, with its key pair model) is loaded only when a repository sets one."""
    from keysyncd.core.jws import ALGORITHMS

    return check.choice(*ALGORITHMS)(value)


def _apart(reader: check.Reader, repository: RepositoryConfig, path: str) -> None:
    """Reject a public directory equal to or nested with the private one: keystone reads
    every file in it, and private.pem (and keysyncd's temp files) must never be there."""
    private, public = (PurePosixPath(os.path.normpath(d)) for d in repository.jws_directories())
    if paths.overlap(private, public):
        reader.fail(
            f"{path}.public_path",
            f"{public} must be apart from the private directory (private_path) "
            f"{private}: neither may be inside the other",
        )


def _kind_fields(reader: check.Reader, data: dict[str, Any], path: str, kind: KeyKind) -> None:
    """Reject fields that do not apply to ``kind``: max_active_keys for key pairs (one per node;
    old public keys go when safe), a kind's own fields (jws: algorithm, directories) for others."""
    size = data.get("max_active_keys")
    if not kind.sized and size is not None:
        reader.fail(
            f"{path}.max_active_keys",
            f"does not apply to kind {kind.name}: each node has one key pair, and an old "
            "public key is retired once token_expiration + allow_expired_window passed",
        )
    fixed = kind.fixed_max_active_keys
    if fixed is not None and size is not None and size != fixed:
        # keystone keeps exactly this many (credential_rotate): fewer would let a key go
        # that unmigrated credentials need, more than keystone would never be trimmed
        reader.fail(
            f"{path}.max_active_keys",
            f"must be {fixed} for kind {kind.name} (keystone always keeps {fixed}); remove it",
        )
    for name in sorted(KIND_FIELDS - kind.fields):
        if data.get(name) is not None:
            owners = " and ".join(k.name for k in KINDS.values() if name in k.fields)
            reader.fail(
                f"{path}.{name}", f"applies to kind {owners} only (this is kind {kind.name})"
            )


def _ssh(reader: check.Reader, value: Any, needed: bool) -> SshConfig:
    data = reader.mapping(value, "ssh", _keys(SshConfig))
    identity = reader.get(data, "identity_file", "ssh", check.absolute_path)
    known_hosts = reader.get(data, "known_hosts", "ssh", check.absolute_path, required=needed)
    user = reader.get(data, "user", "ssh", check.string)
    if user is None and data.get("user") is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # a uid without a passwd entry and no $USER (containers)
            user = None
        if user is None and needed:
            reader.fail("ssh.user", "is required (the current user has no name)")
    return SshConfig(
        user=user or "",
        identity_file=Path(identity) if identity else None,
        known_hosts=Path(known_hosts) if known_hosts else None,
        port=reader.get(data, "port", "ssh", check.integer(1, 65535), 22),
        connect_timeout=float(reader.get(data, "connect_timeout", "ssh", check.number(0), 10.0)),
        operation_timeout=float(
            reader.get(data, "operation_timeout", "ssh", check.number(0), 30.0)
        ),
        concurrency=reader.get(data, "concurrency", "ssh", check.integer(1, 1024), 32),
    )


def _node(reader: check.Reader, value: Any, path: str, default_port: int) -> NodeConfig | None:
    if not isinstance(value, dict):
        reader.fail(path, f"expected a mapping, got {check.type_name(value)}")
        return None
    data = reader.mapping(value, path, _keys(NodeConfig))
    node_path = reader.get(data, "path", path, paths.directory)
    return NodeConfig(
        name=reader.get(data, "name", path, check.name, "", required=True),
        host=reader.get(data, "host", path, check.host, "", required=True),
        port=reader.get(data, "port", path, check.integer(1, 65535), default_port),
        path=Path(node_path) if node_path else None,
    )


def _node_paths(reader: check.Reader, nodes: list[NodeConfig | None], repositories: int) -> None:
    """Reject per-node paths when they would put several repositories in one directory."""
    if repositories < 2:
        return
    for index, node in enumerate(nodes):
        if node and node.path:
            reader.fail(
                f"nodes[{index}].path",
                f"one path for all {repositories} repositories "
                "would make them overwrite each other's keys on this node; a per-node "
                "path is only allowed with a single repository",
            )


def _sections(reader: check.Reader, data: dict[str, Any]) -> dict[str, Any]:
    drift = reader.mapping(data.get("drift"), "drift", _keys(DriftConfig))
    metrics = reader.mapping(data.get("metrics"), "metrics", _keys(MetricsConfig))
    reports = reader.mapping(data.get("reports"), "reports", _keys(ReportsConfig))
    textfile = reader.get(metrics, "textfile", "metrics", check.absolute_path)
    return {
        "drift": DriftConfig(
            watch_local=reader.get(drift, "watch_local", "drift", check.boolean, True),
            on_local_change=reader.get(
                drift, "on_local_change", "drift", check.choice("sync", "alert"), "sync"
            ),
            verify_interval=reader.get(drift, "verify_interval", "drift", check.integer(1), 300),
            on_remote_drift=reader.get(
                drift, "on_remote_drift", "drift", check.choice("repair", "alert"), "repair"
            ),
        ),
        "metrics": MetricsConfig(
            textfile=Path(textfile) if textfile else None,
            listen=reader.get(metrics, "listen", "metrics", check.listen),
        ),
        "reports": ReportsConfig(
            keep_count=reader.get(reports, "keep_count", "reports", check.integer(1), 1000),
            keep_days=reader.get(reports, "keep_days", "reports", check.integer(1), 90),
        ),
        "clock": _clock(reader, data.get("clock")),
    }


def _clock(reader: check.Reader, value: Any) -> ClockConfig:
    data = reader.mapping(value, "clock", _keys(ClockConfig))
    return ClockConfig(
        max_skew=float(reader.get(data, "max_skew", "clock", check.number(0), 300.0))
    )


def parse_config(data: Any, source: Path) -> Config:
    """Return the Config for parsed YAML ``data``; raise ConfigError listing every problem."""
    reader = check.Reader()
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping"])
    data = reader.mapping(data, "", _TOP_KEYS)
    state_dir = reader.get(data, "state_dir", "", check.absolute_path, "/var/lib/keysyncd")
    report_dir = reader.get(data, "report_dir", "", check.absolute_path, f"{state_dir}/reports")
    raw_repositories = check.items(reader, data.get("repositories"), "repositories", True)
    repositories = [
        _repository(reader, item, f"repositories[{index}]")
        for index, item in enumerate(raw_repositories)
    ]
    raw_nodes = check.items(reader, data.get("nodes"), "nodes", False)
    ssh = _ssh(reader, data.get("ssh"), needed=bool(raw_nodes))
    nodes = [
        _node(reader, item, f"nodes[{index}]", ssh.port) for index, item in enumerate(raw_nodes)
    ]
    check.unique(reader, [r.name if r else None for r in repositories], "repositories")
    check.unique(reader, [n.name if n else None for n in nodes], "nodes")
    _node_paths(reader, nodes, len(raw_repositories))
    paths.check_disjoint(reader, repositories, state_dir, report_dir)
    sections = _sections(reader, data)
    if reader.problems:
        raise ConfigError(reader.problems)
    return Config(
        source=source,
        state_dir=Path(state_dir),
        report_dir=Path(report_dir),
        repositories=tuple(r for r in repositories if r),
        ssh=ssh,
        nodes=tuple(n for n in nodes if n),
        **sections,
    )


def load_config(path: Path) -> Config:
    """Return the validated Config read from ``path``; raise ConfigError on any problem."""
    return parse_config(check.read_yaml(path), path)
