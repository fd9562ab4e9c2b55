"""The deployment files as the tests read them: paths, strict YAML, the role's tasks, and
a tiny Jinja subset with the lazy variables of an Ansible host.

The role's templates are rendered with Jinja2 (a test dependency), set up like Ansible's
templar (``_Jinja``, the ``renderer`` fixture of tests/unit/conftest.py).
"""

from __future__ import annotations

import ast
import base64
import configparser
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[1]


ANSIBLE = ROOT / "ansible"


ROLE = ANSIBLE / "roles" / "keysyncd"


MONITORING = ROOT / "monitoring"


RULES = MONITORING / "keysyncd.rules.yml"


RULE_TESTS = MONITORING / "keysyncd.rules.test.yml"


# KeysyncdRotationOverdue on a monthly schedule: 45 days, evaluated hourly (seconds, not a
# minute at keysyncd.rules.test.yml's every minute)
MONTHLY_RULE_TESTS = MONITORING / "keysyncd.rules.monthly.test.yml"


INVENTORY = ANSIBLE / "inventory.example.ini"


# --- YAML -------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(k) for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"repeated key(s) {repeated}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506


def yaml_files() -> list[Path]:
    found = [p for d in (ANSIBLE, MONITORING) for p in d.rglob("*") if p.is_file()]
    return sorted(p for p in found if p.suffix in (".yml", ".yaml"))


# --- a tiny Jinja subset, and the lazy variables of an Ansible host ---------------------


def _to_bool(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def _b64decode(value: str) -> str:
    return base64.b64decode(value).decode()


class _Vars:
    """An Ansible host's variables: templated strings are resolved when first used."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = dict(values)
        self.resolving: set[str] = set()

    def get(self, name: str, renderer: Any) -> Any:
        if name not in self.values:
            raise KeyError(name)
        value = self.values[name]
        if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
            return value
        assert name not in self.resolving, f"{name} refers to itself"
        self.resolving.add(name)
        try:
            single = re.fullmatch(r"\s*\{\{(.*)\}\}\s*", value, re.S)
            if single and "{{" not in single[1]:
                return renderer.evaluate(single[1], self)  # Ansible keeps the native type
            text = renderer.render(value, self)
            if text.strip()[:1] in ("[", "{"):  # as Ansible does with "[...]" results
                return ast.literal_eval(text.strip())
            return text
        finally:
            self.resolving.discard(name)


class _Jinja:
    """Jinja2 set up like Ansible's templar (trim_blocks, strict undefined, its filters)."""

    name = "jinja2"

    def __init__(self) -> None:
        self.env = jinja2.Environment(  # noqa: S701 - renders YAML and INI files, not HTML
            trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
        )
        self.env.filters.update(
            to_json=json.dumps,
            bool=_to_bool,
            b64decode=_b64decode,
            dirname=os.path.dirname,
            regex_escape=re.escape,
            difference=lambda a, b: [x for x in a if x not in b],
            product=lambda a, b: [(x, y) for x in a for y in b],
            extract=lambda key, container: container[key],
        )
        self.kept: list[Any] = []
        self.env.filters["_keep"] = lambda value: self.kept.append(value) or ""

    def _run(self, source: str, variables: _Vars) -> str:
        template = self.env.from_string(source)
        context = template.new_context(_JinjaVars(variables, self), shared=True)
        return self.env.concat(template.root_render_func(context))

    def render(self, source: str, variables: _Vars) -> str:
        return self._run(source, variables)

    def evaluate(self, expression: str, variables: _Vars) -> Any:
        self._run(f"{{{{ ({expression}) | _keep }}}}", variables)
        return self.kept.pop()


class _JinjaVars(Mapping[str, Any]):
    def __init__(self, variables: _Vars, renderer: _Jinja) -> None:
        self.variables, self.renderer = variables, renderer

    def __getitem__(self, name: str) -> Any:
        if name in self.renderer.env.globals:
            return self.renderer.env.globals[name]
        if name not in self.variables.values:
            raise KeyError(name)
        return self.variables.get(name, self.renderer)

    def __contains__(self, name: object) -> bool:
        return name in self.variables.values or name in self.renderer.env.globals

    def __iter__(self) -> Iterator[str]:
        return iter(self.variables.values)

    def __len__(self) -> int:
        return len(self.variables.values)


def parse_inventory(path: Path) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """Return (groups, hostvars) of an INI inventory (hosts with key=value vars)."""
    parser = configparser.ConfigParser(allow_no_value=True, delimiters=("\0",))
    parser.optionxform = str  # keep the case of host names
    parser.read(path)
    groups: dict[str, list[str]] = {"all": []}
    hostvars: dict[str, dict[str, Any]] = {}
    for section in parser.sections():
        if section.endswith(":vars"):
            continue
        groups[section] = []
        for line in parser.options(section):
            host, *assignments = line.split()
            groups[section].append(host)
            groups["all"].append(host)
            entry = hostvars.setdefault(host, {"inventory_hostname": host})
            entry.update(a.split("=", 1) for a in assignments)
    for section in parser.sections():
        if section.endswith(":vars"):
            for host in groups[section.removesuffix(":vars")]:
                for key, value in parser.items(section):
                    hostvars[host].setdefault(key, value)
    return groups, hostvars


def host_variables(host: str, **overrides: Any) -> _Vars:
    """The role's defaults as seen by ``host`` of the example inventory, plus overrides."""
    groups, hostvars = parse_inventory(INVENTORY)
    values: dict[str, Any] = dict(load_yaml(ROLE / "defaults" / "main.yml"))
    values.update(hostvars[host])
    values.update(
        groups=groups,
        hostvars=hostvars,
        role_path=str(ROLE),
        ansible_managed="Ansible managed",
        ansible_facts={"os_family": "Debian"},
    )
    values.update(overrides)
    return _Vars(values)


# The nodes the role derives from inventory.example.ini.
EXAMPLE_NODES = [
    {"name": "ctl1", "host": "192.0.2.11", "port": 22, "path": None, "inventory_hostname": "ctl1"},
    {"name": "ctl2", "host": "192.0.2.12", "port": 22, "path": None, "inventory_hostname": "ctl2"},
    {
        "name": "ctl3",
        "host": "192.0.2.13",
        "port": 2222,
        "path": None,
        "inventory_hostname": "ctl3",
    },
]


def controller_variables(renderer: Any, **overrides: Any) -> _Vars:
    return host_variables("ctl0", **overrides)


def render(renderer: Any, template: str, variables: _Vars) -> str:
    return renderer.render((ROLE / "templates" / template).read_text(encoding="utf-8"), variables)


# --- known_hosts.j2 and the unit drop-in ------------------------------------------------


def _host_key() -> str:
    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


# --- the role's tasks -------------------------------------------------------------------

TASK_KEYWORDS = {
    "any_errors_fatal", "args", "async", "become", "become_exe", "become_flags",
    "become_method", "become_user", "changed_when", "check_mode", "collections", "connection",
    "debugger", "delay", "delegate_facts", "delegate_to", "diff", "environment",
    "failed_when", "ignore_errors", "ignore_unreachable", "listen", "loop",
    "loop_control", "module_defaults", "name", "no_log", "notify", "poll", "port",
    "register", "remote_user", "retries", "run_once", "tags", "throttle", "timeout",
    "until", "vars", "when", "block", "rescue", "always",
}  # fmt: skip


def role_tasks() -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (file, task) for every task and handler of the role, blocks included."""

    def walk(where: str, tasks: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
        for task in tasks:
            yield where, task
            for section in ("block", "rescue", "always"):
                yield from walk(where, task.get(section) or [])

    for path in [*sorted((ROLE / "tasks").glob("*.yml")), ROLE / "handlers" / "main.yml"]:
        yield from walk(path.name, load_yaml(path))


def module_of(task: dict[str, Any]) -> str | None:
    modules = [key for key in task if key not in TASK_KEYWORDS and not key.startswith("with_")]
    assert len(modules) <= 1, f"several modules in {task.get('name')!r}: {modules}"
    return modules[0] if modules else None
