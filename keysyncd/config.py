"""Load the YAML configuration and validate it into frozen dataclasses.

Validation collects every problem with its path (``At 'nodes[2].port': ...``)
and raises one ConfigError listing them all. Unknown keys are errors so that a
typo never silently falls back to a default.
"""

from __future__ import annotations

import getpass
import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from keysyncd.errors import ConfigError, KeysyncError, UsageError
from keysyncd.kinds import KINDS
from keysyncd.schedule import cron_trigger, next_fire_times

DEFAULT_PATH = "/etc/keysyncd/config.yaml"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class Hooks:
    """Local commands run around a rotation, each an argv list (never a shell)."""

    before_rotate: tuple[tuple[str, ...], ...] = ()
    after_rotate: tuple[tuple[str, ...], ...] = ()
    on_failure: tuple[tuple[str, ...], ...] = ()
    timeout: float = 300.0


@dataclass(frozen=True)
class RepositoryConfig:
    """One key repository on the controller and its rotation policy."""

    name: str
    kind: str
    path: Path
    max_active_keys: int
    schedule: str
    timezone: str
    token_expiration: int
    allow_expired_window: int
    owner: int | str | None = None
    group: int | str | None = None
    hooks: Hooks = field(default_factory=Hooks)


@dataclass(frozen=True)
class SshConfig:
    """How keysyncd reaches nodes: SFTP over paramiko with strict host keys."""

    user: str
    identity_file: Path | None
    known_hosts: Path | None
    port: int = 22
    connect_timeout: float = 10.0
    operation_timeout: float = 30.0
    concurrency: int = 32


@dataclass(frozen=True)
class NodeConfig:
    """One node of the fleet; ``path`` overrides the repository path there."""

    name: str
    host: str
    port: int
    path: Path | None = None


@dataclass(frozen=True)
class DriftConfig:
    """What to do about changes keysyncd did not make."""

    watch_local: bool = True
    on_local_change: str = "sync"
    verify_interval: int = 300
    on_remote_drift: str = "repair"


@dataclass(frozen=True)
class MetricsConfig:
    """Where Prometheus metrics go; both optional."""

    textfile: Path | None = None
    listen: str | None = None


@dataclass(frozen=True)
class ReportsConfig:
    """Report retention: the newest ``keep_count`` reports younger than ``keep_days``."""

    keep_count: int = 1000
    keep_days: int = 90


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    source: Path
    state_dir: Path
    report_dir: Path
    repositories: tuple[RepositoryConfig, ...]
    ssh: SshConfig
    nodes: tuple[NodeConfig, ...] = ()
    drift: DriftConfig = field(default_factory=DriftConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)

    def repository(self, name: str) -> RepositoryConfig:
        """Return the repository called ``name``; raise UsageError if there is none."""
        for repository in self.repositories:
            if repository.name == name:
                return repository
        known = ", ".join(r.name for r in self.repositories)
        raise UsageError(f"no repository named {name!r} (configured: {known})")

    def node(self, name: str) -> NodeConfig:
        """Return the node called ``name``; raise UsageError if there is none."""
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes) or "none"
        raise UsageError(f"no node named {name!r} (configured: {known})")


class _Reader:
    """Walks the parsed YAML, collecting problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"At '{path}': {message}")

    def mapping(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {_type_name(value)}")
            return {}
        for key in value:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                self.fail(f"{path}.{key}" if path else str(key), f"unknown key (known: {known})")
        return value

    def get(
        self,
        data: dict[str, Any],
        key: str,
        path: str,
        check: Callable[[Any], str | None],
        default: Any = None,
        required: bool = False,
    ) -> Any:
        full = f"{path}.{key}" if path else key
        if key not in data or data[key] is None:
            if required:
                self.fail(full, "is required")
            return default
        problem = check(data[key])
        if problem:
            self.fail(full, problem)
            return default
        return data[key]


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    return {**names, type(None): "null"}.get(type(value), type(value).__name__)


def _integer(minimum: int, maximum: int | None = None) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        bad = isinstance(value, bool) or not isinstance(value, int)
        if bad or value < minimum or (maximum is not None and value > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            return f"must be an integer >= {minimum}{upper}, got {value!r}"
        return None

    return check


def _number(minimum: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value <= minimum:
            return f"must be a finite number > {minimum}, got {value!r}"
        return None

    return check


def _string(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"must be a non-empty string, got {_type_name(value)}"
    return None


def _name(value: Any) -> str | None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        return "must be a name of letters, digits, '.', '_' or '-' (at most 63)"
    return None


def _absolute_path(value: Any) -> str | None:
    if not isinstance(value, str) or not value.startswith("/"):
        return f"must be an absolute path, got {value!r}"
    return None


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _choice(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value not in choices:
            return f"must be one of {', '.join(choices)}, got {value!r}"
        return None

    return check


def _owner(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        return "must be a numeric id or a name"
    if isinstance(value, int) and value < 0:
        return "must be a numeric id >= 0 or a name"
    return None


def _listen(value: Any) -> str | None:
    if not isinstance(value, str) or not re.fullmatch(r"[^\s:]*:\d{1,5}", value):
        return f"must be HOST:PORT, got {value!r}"
    if not 0 < int(value.rsplit(":", 1)[1]) < 65536:
        return "port must be between 1 and 65535"
    return None


def _timezone(value: Any) -> str | None:
    problem = _string(value)
    if problem:
        return problem
    try:
        cron_trigger("0 0 * * *", value)
    except KeysyncError as error:
        return str(error)
    return None


def _schedule(value: Any) -> str | None:
    problem = _string(value)
    if problem:
        return problem
    try:
        trigger = cron_trigger(value)
    except KeysyncError as error:
        return str(error)
    if not next_fire_times(trigger, datetime.now(UTC), 1):
        return f"the schedule {value!r} never fires"
    return None


def _hook_list(reader: _Reader, value: Any, path: str) -> tuple[tuple[str, ...], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        reader.fail(path, "must be a list of commands")
        return ()
    commands: list[tuple[str, ...]] = []
    for index, item in enumerate(value):
        if isinstance(item, str) and item.strip():
            try:
                commands.append(tuple(shlex.split(item)))
            except ValueError as error:  # e.g. "No closing quotation"
                reader.fail(f"{path}[{index}]", f"cannot split the command: {error}")
        elif isinstance(item, list) and item and all(isinstance(a, str) for a in item):
            commands.append(tuple(item))
        else:
            reader.fail(f"{path}[{index}]", "must be a command string or a list of strings")
    return tuple(commands)


def _hooks(reader: _Reader, value: Any, path: str) -> Hooks:
    names = {"before_rotate", "after_rotate", "on_failure", "timeout"}
    data = reader.mapping(value, path, names)
    return Hooks(
        before_rotate=_hook_list(reader, data.get("before_rotate"), f"{path}.before_rotate"),
        after_rotate=_hook_list(reader, data.get("after_rotate"), f"{path}.after_rotate"),
        on_failure=_hook_list(reader, data.get("on_failure"), f"{path}.on_failure"),
        timeout=float(reader.get(data, "timeout", path, _number(0), 300.0)),
    )


_REPOSITORY_KEYS = {
    "name",
    "kind",
    "path",
    "max_active_keys",
    "schedule",
    "timezone",
    "token_expiration",
    "allow_expired_window",
    "owner",
    "group",
    "hooks",
}


def _repository(reader: _Reader, value: Any, path: str) -> RepositoryConfig | None:
    if not isinstance(value, dict):
        reader.fail(path, f"expected a mapping, got {_type_name(value)}")
        return None
    data = reader.mapping(value, path, _REPOSITORY_KEYS)
    kind = reader.get(data, "kind", path, _choice(*sorted(KINDS)), "fernet")
    schedule = reader.get(data, "schedule", path, _schedule, "0 0 * * *")
    timezone = reader.get(data, "timezone", path, _timezone, "UTC")
    default_max = KINDS[kind].default_max_active_keys if kind in KINDS else 3
    return RepositoryConfig(
        name=reader.get(data, "name", path, _name, "", required=True),
        kind=kind,
        path=Path(reader.get(data, "path", path, _absolute_path, "/", required=True)),
        max_active_keys=reader.get(data, "max_active_keys", path, _integer(2), default_max),
        schedule=schedule,
        timezone=timezone,
        token_expiration=reader.get(data, "token_expiration", path, _integer(1), 3600),
        allow_expired_window=reader.get(data, "allow_expired_window", path, _integer(0), 172800),
        owner=reader.get(data, "owner", path, _owner),
        group=reader.get(data, "group", path, _owner),
        hooks=_hooks(reader, data.get("hooks"), f"{path}.hooks"),
    )


def _current_user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry and no $USER (containers)
        return None


def _ssh(reader: _Reader, value: Any, needed: bool) -> SshConfig:
    keys = {
        "user",
        "identity_file",
        "known_hosts",
        "port",
        "connect_timeout",
        "operation_timeout",
        "concurrency",
    }
    data = reader.mapping(value, "ssh", keys)
    identity = reader.get(data, "identity_file", "ssh", _absolute_path)
    known_hosts = reader.get(data, "known_hosts", "ssh", _absolute_path, required=needed)
    user = reader.get(data, "user", "ssh", _string)
    if user is None and data.get("user") is None:
        user = _current_user()
        if user is None and needed:
            reader.fail("ssh.user", "is required (the current user has no name)")
    return SshConfig(
        user=user or "",
        identity_file=Path(identity) if identity else None,
        known_hosts=Path(known_hosts) if known_hosts else None,
        port=reader.get(data, "port", "ssh", _integer(1, 65535), 22),
        connect_timeout=float(reader.get(data, "connect_timeout", "ssh", _number(0), 10.0)),
        operation_timeout=float(reader.get(data, "operation_timeout", "ssh", _number(0), 30.0)),
        concurrency=reader.get(data, "concurrency", "ssh", _integer(1, 1024), 32),
    )


def _node(reader: _Reader, value: Any, path: str, default_port: int) -> NodeConfig | None:
    if not isinstance(value, dict):
        reader.fail(path, f"expected a mapping, got {_type_name(value)}")
        return None
    data = reader.mapping(value, path, {"name", "host", "port", "path"})
    node_path = reader.get(data, "path", path, _absolute_path)
    return NodeConfig(
        name=reader.get(data, "name", path, _name, "", required=True),
        host=reader.get(data, "host", path, _string, "", required=True),
        port=reader.get(data, "port", path, _integer(1, 65535), default_port),
        path=Path(node_path) if node_path else None,
    )


def _items(reader: _Reader, value: Any, path: str, required: bool) -> list[Any]:
    if value is None:
        if required:
            reader.fail(path, "is required (a list with at least one entry)")
        return []
    if not isinstance(value, list):
        reader.fail(path, f"expected a list, got {_type_name(value)}")
        return []
    if required and not value:
        reader.fail(path, "must list at least one entry")
    return value


def _unique(reader: _Reader, names: list[str | None], path: str) -> None:
    """Report repeated names; ``names`` keeps one slot per entry so indices stay true."""
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name and name in seen:
            reader.fail(f"{path}[{index}].name", f"duplicate name {name!r}")
        if name:
            seen.add(name)


def _node_paths(reader: _Reader, nodes: list[NodeConfig | None], repositories: int) -> None:
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


def _sections(reader: _Reader, data: dict[str, Any]) -> dict[str, Any]:
    drift = reader.mapping(
        data.get("drift"),
        "drift",
        {"watch_local", "on_local_change", "verify_interval", "on_remote_drift"},
    )
    metrics = reader.mapping(data.get("metrics"), "metrics", {"textfile", "listen"})
    reports = reader.mapping(data.get("reports"), "reports", {"keep_count", "keep_days"})
    textfile = reader.get(metrics, "textfile", "metrics", _absolute_path)
    return {
        "drift": DriftConfig(
            watch_local=reader.get(drift, "watch_local", "drift", _boolean, True),
            on_local_change=reader.get(
                drift, "on_local_change", "drift", _choice("sync", "alert"), "sync"
            ),
            verify_interval=reader.get(drift, "verify_interval", "drift", _integer(1), 300),
            on_remote_drift=reader.get(
                drift, "on_remote_drift", "drift", _choice("repair", "alert"), "repair"
            ),
        ),
        "metrics": MetricsConfig(
            textfile=Path(textfile) if textfile else None,
            listen=reader.get(metrics, "listen", "metrics", _listen),
        ),
        "reports": ReportsConfig(
            keep_count=reader.get(reports, "keep_count", "reports", _integer(1), 1000),
            keep_days=reader.get(reports, "keep_days", "reports", _integer(1), 90),
        ),
    }


_TOP_KEYS = {
    "state_dir",
    "report_dir",
    "repositories",
    "ssh",
    "nodes",
    "drift",
    "metrics",
    "reports",
}


def parse_config(data: Any, source: Path) -> Config:
    """Return the Config for parsed YAML ``data``; raise ConfigError listing every problem."""
    reader = _Reader()
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping"])
    data = reader.mapping(data, "", _TOP_KEYS)
    state_dir = reader.get(data, "state_dir", "", _absolute_path, "/var/lib/keysyncd")
    report_dir = reader.get(data, "report_dir", "", _absolute_path, f"{state_dir}/reports")
    raw_repositories = _items(reader, data.get("repositories"), "repositories", True)
    repositories = [
        _repository(reader, item, f"repositories[{index}]")
        for index, item in enumerate(raw_repositories)
    ]
    raw_nodes = _items(reader, data.get("nodes"), "nodes", False)
    ssh = _ssh(reader, data.get("ssh"), needed=bool(raw_nodes))
    nodes = [
        _node(reader, item, f"nodes[{index}]", ssh.port) for index, item in enumerate(raw_nodes)
    ]
    _unique(reader, [r.name if r else None for r in repositories], "repositories")
    _unique(reader, [n.name if n else None for n in nodes], "nodes")
    _node_paths(reader, nodes, len(raw_repositories))
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
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except OSError as error:
        raise ConfigError([f"{path}: cannot read config: {error.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError([f"{path}: line {line}: not UTF-8 text"]) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as error:
        raise ConfigError([f"{path}: {_yaml_problem(error, text)}"]) from None
    return parse_config(data, path)


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping instead of keeping the last.

    A second ``nodes:`` section silently replacing the first would stop keys reaching nodes.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(error: yaml.YAMLError, text: str) -> str:
    """Return ``line L column C: malformed YAML: PROBLEM`` for a PyYAML error."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    position = getattr(error, "position", None)  # ReaderError: bad characters
    if mark is not None:
        where = f"line {mark.line + 1} column {mark.column + 1}: "
    elif isinstance(position, int):
        line = text.count("\n", 0, position) + 1
        column = position - text.rfind("\n", 0, position)
        where = f"line {line} column {column}: "
    else:
        where = ""
    problem = getattr(error, "problem", None) or getattr(error, "reason", None)
    character = getattr(error, "character", None)
    if isinstance(character, int):
        problem = f"character #x{character:04x}: {problem}"
    return f"{where}malformed YAML: {problem or 'not valid YAML'}"
