"""The toolkit config loading validates with: a problem-collecting Reader, value checks (each
returns a problem message, or None), strict YAML. The Reader prefixes each problem with its
path (``At 'nodes[2].port': ...``) and keeps going, so every problem is reported at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from keysyncd.core.schedule import cron_trigger, next_fire_times
from keysyncd.errors import ConfigError, KeysyncError

Check = Callable[[Any], str | None]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# one DNS label (RFC 1123; underscores too, as resolvers and /etc/hosts accept them)
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


class Reader:
    """Walks the parsed YAML, collecting problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"At '{path}': {message}")

    def mapping(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {type_name(value)}")
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
        check: Check,
        default: Any = None,
        required: bool = False,
    ) -> Any:
        full = f"{path}.{key}" if path else key
        if key not in data or data[key] is None:
            if required:
                self.fail(full, "is required")
            return default
        if problem := check(data[key]):
            self.fail(full, problem)
            return default
        return data[key]


def type_name(value: Any) -> str:
    """Return how a problem message names the YAML type of ``value`` ("a mapping", "null")."""
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    return {**names, type(None): "null"}.get(type(value), type(value).__name__)


def integer(minimum: int, maximum: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        bad = isinstance(value, bool) or not isinstance(value, int)
        if bad or value < minimum or (maximum is not None and value > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            return f"must be an integer >= {minimum}{upper}, got {value!r}"
        return None

    return check


def number(minimum: float) -> Check:
    def check(value: Any) -> str | None:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or not math.isfinite(value) or value <= minimum:
            return f"must be a finite number > {minimum}, got {value!r}"
        return None

    return check


def string(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"must be a non-empty string, got {type_name(value)}"
    return None


def name(value: Any) -> str | None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        return "must be a name of letters, digits, '.', '_' or '-' (at most 63)"
    return None


def host(value: Any) -> str | None:
    """Accept a host name (dot-separated labels of letters, digits, '-' and '_', at most 253
    characters) or an IP address (IPv6 without brackets)."""
    if problem := string(value):
        return problem
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(value)
        return None
    hint = " (an IPv6 address goes without brackets)" if value.startswith("[") else ""
    labels = value.removesuffix(".").split(".")
    if len(value) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return f"must be a host name or an IP address{hint}, got {value!r}"
    if labels[-1].isdigit():
        return f"must be a host name or an IP address (not a valid IPv4 address), got {value!r}"
    return None


def absolute_path(value: Any) -> str | None:
    if not isinstance(value, str) or not value.startswith("/"):
        return f"must be an absolute path, got {value!r}"
    return None


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def choice(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        if value not in choices:
            return f"must be one of {', '.join(choices)}, got {value!r}"
        return None

    return check


def owner(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        return "must be a numeric id or a name"
    if isinstance(value, int) and value < 0:
        return "must be a numeric id >= 0 or a name"
    return None


def listen(value: Any) -> str | None:
    if not isinstance(value, str) or not re.fullmatch(r"[^\s:]*:\d{1,5}", value):
        return f"must be HOST:PORT, got {value!r}"
    if not 0 < int(value.rsplit(":", 1)[1]) < 65536:
        return "port must be between 1 and 65535"
    return None


def timezone(value: Any) -> str | None:
    if problem := string(value):
        return problem
    try:
        cron_trigger("0 0 * * *", value)
    except KeysyncError as error:
        return str(error)
    return None


def schedule(value: Any) -> str | None:
    if problem := string(value):
        return problem
    try:
        trigger = cron_trigger(value)
    except KeysyncError as error:
        return str(error)
    if not next_fire_times(trigger, datetime.now(UTC), 1):
        return f"the schedule {value!r} never fires"
    return None


def commands(reader: Reader, value: Any, path: str) -> tuple[tuple[str, ...], ...]:
    """Return a list of commands as argv tuples; a string is split like a shell would."""
    if value is None:
        return ()
    if not isinstance(value, list):
        reader.fail(path, "must be a list of commands")
        return ()
    argvs: list[tuple[str, ...]] = []
    for index, item in enumerate(value):
        if isinstance(item, str) and item.strip():
            import shlex  # here: most configs have no hooks (a start-up cost otherwise)

            try:
                argvs.append(tuple(shlex.split(item)))
            except ValueError as error:  # e.g. "No closing quotation"
                reader.fail(f"{path}[{index}]", f"cannot split the command: {error}")
        elif isinstance(item, list) and item and all(isinstance(a, str) for a in item):
            argvs.append(tuple(item))
        else:
            reader.fail(f"{path}[{index}]", "must be a command string or a list of strings")
    return tuple(argvs)


def items(reader: Reader, value: Any, path: str, required: bool) -> list[Any]:
    """Return the entries of a YAML list; a missing or wrong one is a problem and gives []."""
    if value is None:
        if required:
            reader.fail(path, "is required (a list with at least one entry)")
        return []
    if not isinstance(value, list):
        reader.fail(path, f"expected a list, got {type_name(value)}")
        return []
    if required and not value:
        reader.fail(path, "must list at least one entry")
    return value


def unique(reader: Reader, names: list[str | None], path: str) -> None:
    """Report repeated names; ``names`` keeps one slot per entry so indices stay true."""
    seen: set[str] = set()
    for index, entry in enumerate(names):
        if entry and entry in seen:
            reader.fail(f"{path}[{index}].name", f"duplicate name {entry!r}")
        if entry:
            seen.add(entry)


def read_yaml(path: Path) -> Any:
    """Return the YAML document in ``path``; raise ConfigError naming the file (and line)."""
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
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as error:
        raise ConfigError([f"{path}: {_yaml_problem(error, text)}"]) from None


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in a mapping instead of keeping the last (a second
    ``nodes:`` silently replacing the first would stop keys reaching nodes)."""

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
