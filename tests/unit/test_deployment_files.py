"""Checks of the deployment files: the Ansible role and the Prometheus rules.

The role's templates are rendered with Jinja2 (a test dependency), set up like Ansible's
templar, and the result is fed to keysyncd's own config loader, so a template that renders
an invalid config fails here, not on a controller.
``ansible-playbook --syntax-check`` always runs, and so does promtool (the test command
installs it, see scripts/bootstrap): ``check rules --lint-fatal``, the rules' unit tests
(``test rules``) and ``check metrics`` on the metrics of a real run.
"""

from __future__ import annotations

import ast
import base64
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
import paramiko
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keysyncd.config import load_config, parse_config
from keysyncd.core.journal import Durations, NodeRecord, RepositoryState
from keysyncd.core.policy import KeyHistory
from keysyncd.io.local.state import save_state
from keysyncd.io.runtime.metrics import StateCollector
from tests.metrics_sample import sample_exposition

ROOT = Path(__file__).resolve().parents[2]
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


def test_the_deployment_files_exist() -> None:
    for path in (
        ANSIBLE / "site.yml",
        INVENTORY,
        ROLE / "README.md",
        ROLE / "defaults" / "main.yml",
        ROLE / "handlers" / "main.yml",
        ROLE / "meta" / "main.yml",
        ROLE / "tasks" / "main.yml",
        ROLE / "tasks" / "controller.yml",
        ROLE / "tasks" / "node.yml",
        ROLE / "templates" / "config.yaml.j2",
        RULES,
        MONITORING / "README.md",
    ):
        assert path.is_file(), path


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert load_yaml(path) is not None


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


@pytest.fixture
def renderer() -> Any:
    return _Jinja()


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


def test_the_inventory_example_has_one_controller_and_the_node_group() -> None:
    groups, _ = parse_inventory(INVENTORY)
    assert len(groups["keysyncd_controller"]) == 1
    assert groups["keystone_nodes"]


def test_the_node_list_is_derived_from_the_inventory() -> None:
    variables = host_variables("ctl0")
    assert variables.get("keysyncd_nodes", _Jinja()) == EXAMPLE_NODES
    with_path = host_variables("ctl0", hostvars={"n1": {"keysyncd_node_path": "/srv/keys"}})
    with_path.values["groups"] = {"keystone_nodes": ["n1"], "keysyncd_controller": ["c"]}
    [node] = with_path.get("keysyncd_nodes", _Jinja())
    assert node == {
        "name": "n1",
        "host": "n1",
        "port": 22,
        "path": "/srv/keys",
        "inventory_hostname": "n1",
    }


# --- config.yaml.j2 ---------------------------------------------------------------------


def test_the_config_template_renders_a_config_keysyncd_accepts(
    renderer: Any, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(render(renderer, "config.yaml.j2", controller_variables(renderer)))
    config = load_config(path)

    fernet, credential = config.repositories
    assert (fernet.name, fernet.kind, str(fernet.path)) == (
        "fernet-tokens",
        "fernet",
        "/etc/keystone/fernet-keys",
    )
    assert (fernet.max_active_keys, fernet.schedule, fernet.timezone) == (5, "0 0 * * *", "UTC")
    assert (fernet.token_expiration, fernet.allow_expired_window) == (3600, 172800)
    assert (fernet.owner, fernet.group) == ("keystone", "keystone")
    assert (credential.kind, credential.max_active_keys) == ("credential", 3)
    assert credential.hooks.after_rotate == (("keystone-manage", "credential_migrate"),)
    assert credential.hooks.timeout == 900
    assert str(config.ssh.identity_file) == "/etc/keysyncd/id_ed25519"
    assert str(config.ssh.known_hosts) == "/etc/keysyncd/known_hosts"
    assert config.ssh.user == "keystone"
    assert [(n.name, n.host, n.port, n.path) for n in config.nodes] == [
        ("ctl1", "192.0.2.11", 22, None),
        ("ctl2", "192.0.2.12", 22, None),
        ("ctl3", "192.0.2.13", 2222, None),
    ]
    assert str(config.state_dir) == "/var/lib/keysyncd"
    assert str(config.report_dir) == "/var/lib/keysyncd/reports"
    assert config.drift.verify_interval == 300
    assert (config.metrics.listen, config.metrics.textfile) == ("127.0.0.1:9387", None)


def test_the_config_template_handles_overrides(renderer: Any, tmp_path: Path) -> None:
    variables = controller_variables(
        renderer,
        keysyncd_repositories=[
            {"name": "fernet", "path": "/srv/fernet", "owner": None, "group": 42056}
        ],
        keysyncd_nodes=[{"name": "a", "host": "a.example", "port": 22, "path": "/srv/keys"}],
        keysyncd_schedule="*/30 * * * * *",
        keysyncd_metrics_listen="",
        keysyncd_metrics_textfile="/var/lib/node_exporter/textfile/keysyncd.prom",
        keysyncd_drift_watch_local="no",
    )
    path = tmp_path / "config.yaml"
    path.write_text(render(renderer, "config.yaml.j2", variables))
    config = load_config(path)
    [repository] = config.repositories
    assert (repository.owner, repository.group, repository.kind) == (None, 42056, "fernet")
    assert repository.schedule == "*/30 * * * * *"
    assert repository.hooks.after_rotate == ()
    assert [(n.name, str(n.path)) for n in config.nodes] == [("a", "/srv/keys")]
    assert config.metrics.listen is None
    assert str(config.metrics.textfile).endswith("keysyncd.prom")
    assert config.drift.watch_local is False

    no_nodes = controller_variables(renderer, keysyncd_nodes=[], keysyncd_metrics_listen="")
    path.write_text(render(renderer, "config.yaml.j2", no_nodes))
    config = load_config(path)
    assert config.nodes == ()
    assert (config.metrics.listen, config.metrics.textfile) == (None, None)


THREE_KINDS = [
    {"name": "fernet-tokens", "kind": "fernet", "path": "/etc/keystone/fernet-keys"},
    {"name": "credential-keys", "kind": "credential", "path": "/etc/keystone/credential-keys",
     "hooks": {"after_rotate": ["keystone-manage credential_migrate"]}},
    {"name": "jws-keys", "kind": "jws", "path": "/etc/keystone/jws-keys",
     "schedule": "0 4 1 * *"},
]  # fmt: skip


def test_the_config_template_writes_each_kind_with_exactly_its_fields(
    renderer: Any, tmp_path: Path
) -> None:
    variables = controller_variables(renderer, keysyncd_repositories=THREE_KINDS)
    text = render(renderer, "config.yaml.j2", variables)
    written = {r["name"]: set(r) for r in yaml.safe_load(text)["repositories"]}
    common = {"name", "kind", "path", "schedule", "timezone", "token_expiration",
              "allow_expired_window", "owner", "group"}  # fmt: skip
    assert written == {
        "fernet-tokens": common | {"max_active_keys", "hooks"},
        "credential-keys": common | {"hooks"},
        "jws-keys": common | {"algorithm", "private_path", "public_path"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(text)
    fernet, credential, jws = load_config(path).repositories
    assert (fernet.kind, fernet.max_active_keys) == ("fernet", 5)
    assert (credential.kind, credential.max_active_keys) == ("credential", 3)
    assert credential.hooks.after_rotate == (("keystone-manage", "credential_migrate"),)
    assert (jws.kind, jws.algorithm, jws.schedule) == ("jws", "ES256", "0 4 1 * *")
    assert (str(jws.private_path), str(jws.public_path)) == (
        "/etc/keystone/jws-keys/private",
        "/etc/keystone/jws-keys/public",
    )
    assert jws.hooks.after_rotate == ()

    chosen = [{**THREE_KINDS[2], "algorithm": "EdDSA", "private_path": "/srv/jws/signing",
               "public_path": "/srv/jws/verifying"}]  # fmt: skip
    chosen_variables = controller_variables(renderer, keysyncd_repositories=chosen)
    path.write_text(render(renderer, "config.yaml.j2", chosen_variables))
    [jws] = load_config(path).repositories
    assert (jws.algorithm, str(jws.private_path), str(jws.public_path)) == (
        "EdDSA",
        "/srv/jws/signing",
        "/srv/jws/verifying",
    )


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({**THREE_KINDS[2], "max_active_keys": 4}, "max_active_keys"),
        ({**THREE_KINDS[2], "hooks": {"after_rotate": ["/usr/bin/true"]}}, "hooks"),
        ({**THREE_KINDS[1], "max_active_keys": 5}, "max_active_keys"),
        ({**THREE_KINDS[0], "algorithm": "ES256"}, "algorithm"),
    ],
)
def test_a_field_its_kind_does_not_take_is_written_for_keysyncd_to_reject(
    renderer: Any, tmp_path: Path, entry: dict[str, Any], field: str
) -> None:
    """Written as given, never dropped: check-config (run before the config is installed)
    then fails the play naming the field, rather than keysyncd silently using another."""
    from keysyncd.errors import ConfigError

    variables = controller_variables(renderer, keysyncd_repositories=[entry])
    path = tmp_path / "config.yaml"
    path.write_text(render(renderer, "config.yaml.j2", variables))
    with pytest.raises(ConfigError, match=rf"repositories\[0\]\.{field}"):
        load_config(path)


def _node_directories(renderer: Any, node: dict[str, Any], repositories: Any) -> list[str]:
    """The directories node.yml creates on a node, as its loop renders them."""
    [task] = [t for t in load_yaml(ROLE / "tasks" / "node.yml")
              if t["name"].startswith("Create the repository directories")]  # fmt: skip
    variables = host_variables("ctl1", keysyncd_repositories=repositories, _keysyncd_node=node)
    result = ast.literal_eval(renderer.render(task["loop"], variables).strip())
    assert isinstance(result, list)
    return result


def test_the_nodes_get_every_directory_keystone_reads(renderer: Any) -> None:
    assert _node_directories(renderer, EXAMPLE_NODES[0], THREE_KINDS) == [
        "/etc/keystone/fernet-keys",
        "/etc/keystone/credential-keys",
        "/etc/keystone/jws-keys",
        "/etc/keystone/jws-keys/private",
        "/etc/keystone/jws-keys/public",
    ]
    moved = [{**THREE_KINDS[2], "private_path": "/srv/a", "public_path": "/srv/b"}]
    assert _node_directories(renderer, {}, moved) == ["/etc/keystone/jws-keys", "/srv/a", "/srv/b"]
    own = {**EXAMPLE_NODES[0], "path": "/srv/keys"}  # keysyncd_node_path: path/private, /public
    assert _node_directories(renderer, own, moved) == [
        "/srv/keys",
        "/srv/keys/private",
        "/srv/keys/public",
    ]


# --- known_hosts.j2 and the unit drop-in ------------------------------------------------


def _host_key() -> str:
    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def test_known_hosts_uses_bracketed_entries_for_ports_other_than_22(
    renderer: Any, tmp_path: Path
) -> None:
    keys = {node["name"]: _host_key() for node in EXAMPLE_NODES}
    rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7"  # served too, but not a configured type
    _, hostvars = parse_inventory(INVENTORY)
    for node in EXAMPLE_NODES:
        served = [{"stdout": f"{keys[node['name']]} root@x"}, {"stdout": rsa}]
        hostvars[node["name"]]["_keysyncd_served_host_keys"] = {"results": served}
    variables = controller_variables(renderer, hostvars=hostvars)
    path = tmp_path / "known_hosts"
    path.write_text(render(renderer, "known_hosts.j2", variables))

    host_keys = paramiko.HostKeys(str(path))
    for name, lookup in (("ctl1", "192.0.2.11"), ("ctl3", "[192.0.2.13]:2222")):
        found = host_keys.lookup(lookup)
        assert found is not None, lookup
        assert found["ssh-ed25519"].get_base64() == keys[name].split()[1]
    assert host_keys.lookup("192.0.2.13") is None
    assert "root@x" not in path.read_text()
    assert "ssh-rsa" not in path.read_text(), "only keysyncd_host_key_types are trusted"


def test_the_unit_drop_in_names_every_writable_path(renderer: Any) -> None:
    text = render(renderer, "keysyncd.service.conf.j2", controller_variables(renderer))
    lines = text.splitlines()
    assert "User=keystone" in lines
    assert "Group=keystone" in lines
    writable = [line.split("=", 1)[1] for line in lines if line.startswith("ReadWritePaths=")]
    assert writable[0] == "", "the unit's own list must be reset first"
    for path in ("/var/lib/keysyncd", "/etc/keystone/fernet-keys", "/etc/keystone/credential-keys"):
        assert path in writable
    # a jws repository's path is the nodes': the controller keeps its pairs in state_dir
    kinds = controller_variables(renderer, keysyncd_repositories=THREE_KINDS)
    text_kinds = render(renderer, "keysyncd.service.conf.j2", kinds)
    assert "ReadWritePaths=/etc/keystone/credential-keys" in text_kinds.splitlines()
    assert "jws-keys" not in text_kinds
    assert not any(line.startswith("ExecStart") for line in lines)
    assert "IPAddressDeny=any" in lines
    assert "IPAddressAllow=localhost" in lines
    resolved = {"results": [{"ansible_facts": {"getent_ahosts": {"192.0.2.11": ["STREAM"]}}}]}
    with_nodes = controller_variables(renderer, _keysyncd_node_addresses=resolved)
    assert "IPAddressAllow=192.0.2.11" in render(renderer, "keysyncd.service.conf.j2", with_nodes)
    no_list = controller_variables(renderer, keysyncd_ip_address_deny="")
    assert "IPAddress" not in render(renderer, "keysyncd.service.conf.j2", no_list)

    moved = controller_variables(renderer, keysyncd_config_dir="/srv/keysyncd")
    text = render(renderer, "keysyncd.service.conf.j2", moved)
    assert "ExecStart=/usr/local/bin/keysyncd --config /srv/keysyncd/config.yaml run" in text


def test_the_role_installs_what_the_unit_runs(renderer: Any) -> None:
    unit = (ROOT / "systemd" / "keysyncd.service").read_text(encoding="utf-8")
    [exec_start] = re.findall(r"^ExecStart=(.*)$", unit, re.M)
    variables = controller_variables(renderer)
    config_file = variables.get("keysyncd_config_file", renderer)
    assert exec_start == f"/usr/local/bin/keysyncd --config {config_file} run"
    tasks = (ROLE / "tasks" / "controller.yml").read_text(encoding="utf-8")
    assert "dest: /usr/local/bin/keysyncd" in tasks
    assert "systemd/keysyncd.service" in tasks


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


def test_every_task_is_named_and_uses_a_builtin_fqcn_module() -> None:
    count = 0
    for where, task in role_tasks():
        count += 1
        assert isinstance(task.get("name"), str) and task["name"].strip(), (where, task)
        module = module_of(task)
        if "block" in task:
            assert module is None, (where, task["name"])
            continue
        assert module is not None, (where, task["name"])
        assert module.startswith("ansible.builtin."), (where, task["name"], module)
    assert count > 20


def test_main_runs_the_controller_and_node_task_files() -> None:
    imported = {
        task[module_of(task)]
        for _, task in role_tasks()
        if module_of(task) == "ansible.builtin.import_tasks"
    }
    assert imported == {"controller.yml", "node.yml"}


def test_every_notified_handler_exists() -> None:
    handlers = {task["name"] for task in load_yaml(ROLE / "handlers" / "main.yml")}
    for where, task in role_tasks():
        notify = task.get("notify") or []
        for name in [notify] if isinstance(notify, str) else notify:
            assert name in handlers, (where, task["name"], name)


def test_the_authorized_key_is_restricted_to_sftp(renderer: Any) -> None:
    tasks = [
        task
        for _, task in role_tasks()
        if "authorized_keys" in str(task.get(module_of(task) or "", {}))
        and module_of(task) == "ansible.builtin.lineinfile"
    ]
    [task] = tasks
    line = task["ansible.builtin.lineinfile"]["line"]
    assert "restrict" in line
    assert 'command="internal-sftp"' in line

    key = _host_key()
    content = base64.b64encode(f"{key} keysyncd@ctl0\n".encode()).decode()
    for source, expected in (("", ""), ("192.0.2.10", 'from="192.0.2.10",')):
        variables = host_variables(
            "ctl1",
            keysyncd_authorized_key_from=source,
            _keysyncd_public_key={"content": content},
            keysyncd_controller_host="ctl0",
            **task["vars"],
        )
        rendered = renderer.render(line, variables)
        assert rendered == f'restrict,{expected}command="internal-sftp" {key} keysyncd@ctl0'
        regexp = renderer.render(task["ansible.builtin.lineinfile"]["regexp"], variables)
        assert re.search(regexp, rendered)
        assert re.search(regexp, f"{key}\n")  # an unrestricted copy of the key is replaced


def test_known_hosts_is_read_from_what_sshd_serves_never_scanned() -> None:
    tasks = list(role_tasks())
    assert not any("ssh-keyscan" in json.dumps(task) for _, task in tasks)
    commands = {
        task["name"]: task[module_of(task)]["argv"]
        for _, task in tasks
        if module_of(task) == "ansible.builtin.command" and "argv" in task[module_of(task)]
    }
    asked = [name for name, argv in commands.items() if argv[-1:] == ["-T"] and "sshd" in argv[0]]
    derived = [name for name, argv in commands.items() if argv[:2] == ["ssh-keygen", "-y"]]
    assert asked and derived, "host keys must come from `sshd -T` and `ssh-keygen -y`"
    for _, task in tasks:
        if task["name"] in asked + derived:
            assert task.get("check_mode") is False and task.get("changed_when") is False
            assert "delegate_to" not in task, "read on the node itself"
    template = (ROLE / "templates" / "known_hosts.j2").read_text(encoding="utf-8")
    assert "_keysyncd_served_host_keys" in template


def test_the_created_account_is_not_locked_and_the_venv_python_is_explicit() -> None:
    [create] = [task for _, task in role_tasks() if module_of(task) == "ansible.builtin.user"]
    assert create["ansible.builtin.user"]["password"] == "{{ keysyncd_user_password }}"
    defaults = load_yaml(ROLE / "defaults" / "main.yml")
    assert defaults["keysyncd_user_password"] == "*"
    assert defaults["keysyncd_python"] == "/usr/bin/python3"


def test_ansible_lint_production_profile_is_clean(tmp_path: Path) -> None:
    lint = shutil.which("ansible-lint", path=os.path.dirname(sys.executable))
    assert lint is not None, "ansible-lint (a test extra) is not installed"
    result = subprocess.run(
        [lint, "--profile", "production", "--offline", "--nocolor", "site.yml"],
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path), "HOME": str(tmp_path)},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the Prometheus rules ---------------------------------------------------------------

ALERTS = {
    "KeysyncdNodeOutOfSync",
    "KeysyncdNodeNeverVerified",
    "KeysyncdRotationOverdue",
    "KeysyncdDrift",
    "KeysyncdLocalRepositoryInvalid",
    "KeysyncdRotationDeferred",
    "KeysyncdConfigReloadRejected",
    "KeysyncdNodeDown",
    "KeysyncdMetricsMissing",
    "KeysyncdRepositoryReplaced",
    "KeysyncdClockUntrusted",
}
DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")


def rules() -> list[dict[str, Any]]:
    document = load_yaml(RULES)
    assert isinstance(document, dict) and list(document) == ["groups"]
    found = []
    for group in document["groups"]:
        assert isinstance(group["name"], str) and group["name"]
        assert isinstance(group["rules"], list) and group["rules"]
        found.extend(group["rules"])
    return found


def test_the_rules_file_has_every_alert_with_labels_and_annotations() -> None:
    names = set()
    for rule in rules():
        name = rule["alert"]
        names.add(name)
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), name
        assert DURATION.fullmatch(str(rule["for"])), name
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert rule["annotations"]["summary"].strip(), name
        assert "What to do" in rule["annotations"]["description"], name
        expression = rule["expr"]
        for opening, closing in ("()", "[]", "{}"):
            assert expression.count(opening) == expression.count(closing), name
    assert names >= ALERTS


@pytest.fixture(scope="module")
def exported_samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, set[str]]]:
    """Sample name -> label name -> values, from keysyncd's collector over a small state."""
    tmp = tmp_path_factory.mktemp("metrics")
    config = parse_config(
        {
            "state_dir": str(tmp / "state"),
            "repositories": [{"name": "fernet-tokens", "path": str(tmp / "keys")}],
            "ssh": {"user": "keystone", "known_hosts": str(tmp / "known_hosts")},
            "nodes": [{"name": "n1", "host": "192.0.2.1"}, {"name": "n2", "host": "192.0.2.2"}],
        },
        tmp / "config.yaml",
    )
    save_state(
        config.state_dir,
        RepositoryState(
            name="fernet-tokens",
            generation=1,
            digests={0: "a" * 64, 1: "b" * 64},
            history={0: KeyHistory(created_at=1.0), 1: KeyHistory(created_at=0.5, promoted_at=1.0)},
            last_rotation_at=1.0,
            last_success={"sync": 1.0, "verify": 1.0},
            nodes={"n1": NodeRecord(status="in_sync", last_verified_at=1.0, generation=1)},
            counters={"drift:missing": 1, "drift:local_replaced": 1, "deferred": 1},
            durations={"sync": Durations().add(0.4)},
        ),
    )
    samples: dict[str, dict[str, set[str]]] = {}
    for family in StateCollector(lambda: config, clock=lambda: 100.0).collect():
        for sample in family.samples:
            labels = samples.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
        if family.type == "histogram":  # no report yet, so no observation: name them
            for suffix in ("_bucket", "_sum", "_count"):
                labels = {"action": set(), **({"le": set()} if suffix == "_bucket" else {})}
                samples.setdefault(family.name + suffix, labels)
    return samples


Samples = dict[str, dict[str, set[str]]]


def test_the_collector_exports_what_the_rules_rely_on(exported_samples: Samples) -> None:
    assert "keysyncd_drift_events_total" in exported_samples  # counters gain _total
    assert "keysyncd_nodes" in exported_samples  # a gauge: no _total (promtool check metrics)
    assert "keysyncd_deferrals_total" in exported_samples
    assert "keysyncd_action_duration_seconds_bucket" in exported_samples
    verified = exported_samples["keysyncd_node_last_verified_timestamp_seconds"]
    assert set(verified) == {"repository", "node"}
    assert "rotate" in exported_samples["keysyncd_last_success_timestamp_seconds"]["action"]
    for due in (
        "keysyncd_next_rotation_timestamp_seconds",
        "keysyncd_rotation_overdue_timestamp_seconds",
        "keysyncd_rotation_overdue",
    ):
        assert set(exported_samples[due]) == {"repository"}, due


# label values the rules may match on: fixed by keysyncd, unlike repository or node names
FIXED_VALUES = ("action", "role", "kind")


def test_every_metric_and_label_in_the_rules_exists(exported_samples: Samples) -> None:
    for rule in rules():
        expression = rule["expr"]
        used = set(re.findall(r"\bkeysyncd_[a-z_]+\b", expression))
        assert used, rule["alert"]
        unknown = used - set(exported_samples)
        assert not unknown, f"{rule['alert']}: keysyncd exports no {sorted(unknown)}"
        for metric, matchers in re.findall(r"\b(keysyncd_[a-z_]+)\s*\{([^}]*)\}", expression):
            for label, value in re.findall(r'(\w+)\s*=\s*"([^"]*)"', matchers):
                assert label in exported_samples[metric], (rule["alert"], metric, label)
                if label in FIXED_VALUES:
                    assert value in exported_samples[metric][label], (rule["alert"], value)
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=)", matchers):
                assert label in exported_samples[metric], (rule["alert"], metric, label)
        available = set().union(*(exported_samples[m] for m in used)) | {"instance", "job"}
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert label in available, (rule["alert"], label)


# --- external tools, when installed -----------------------------------------------------


def test_ansible_playbook_syntax_check(tmp_path: Path) -> None:
    # ansible-core is a test dependency, installed beside the interpreter running the tests
    playbook = shutil.which("ansible-playbook", path=os.path.dirname(sys.executable))
    assert playbook is not None, "ansible-core (a test extra) is not installed"
    result = subprocess.run(
        [
            playbook,
            "--syntax-check",
            "-i",
            str(INVENTORY),
            str(ANSIBLE / "site.yml"),
        ],
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path), "ANSIBLE_NOCOLOR": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def promtool() -> str:
    """Return the promtool command (installed by scripts/bootstrap into .venv/bin)."""
    found = shutil.which("promtool", path=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}")
    assert found is not None, "promtool is not installed: run scripts/bootstrap (./scripts/test)"
    return found


def run_promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [promtool(), *args],
        input=stdin,
        capture_output=True,
        cwd=MONITORING,
        timeout=120,
        check=False,
    )


def test_promtool_check_rules_lint_fatal() -> None:
    """Valid PromQL and templates, and no duplicate rule (the same name and labels twice)."""
    result = run_promtool("check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_every_alert_has_rule_unit_tests_that_fire_and_stay_quiet() -> None:
    """Each alert is tested firing (expected labels and rendered annotations) and quiet."""
    document = load_yaml(RULE_TESTS)
    assert document["rule_files"] == [RULES.name]
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in document["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
            for alert in case["exp_alerts"]:
                assert alert["exp_annotations"]["summary"], case["alertname"]
    alerts = {rule["alert"] for rule in rules()}
    assert alerts == ALERTS
    assert firing == alerts, f"never seen firing: {sorted(alerts - firing)}"
    assert quiet == alerts, f"never seen quiet: {sorted(alerts - quiet)}"


def test_promtool_rule_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", str(RULE_TESTS), str(MONTHLY_RULE_TESTS))
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert (result.stdout + result.stderr).count(b"SUCCESS") == 2


def test_the_overdue_alert_is_tested_on_a_daily_and_a_monthly_schedule() -> None:
    """Quiet in the month after a monthly rotation, firing once overdue; no threshold or
    repository name in the rule (each repository's schedule decides, through keysyncd)."""
    [rule] = [r for r in rules() if r["alert"] == "KeysyncdRotationOverdue"]
    assert "repository=" not in rule["expr"] and "repository!=" not in rule["expr"]
    assert not re.search(r"\d{4,}", rule["expr"]), "a threshold in seconds is back"
    monthly = load_yaml(MONTHLY_RULE_TESTS)
    assert monthly["rule_files"] == [RULES.name]
    cases = [c for t in monthly["tests"] for c in t["alert_rule_test"]]
    assert {c["alertname"] for c in cases} == {"KeysyncdRotationOverdue"}
    quiet = [c["eval_time"] for c in cases if not c["exp_alerts"]]
    assert {"2d", "30d"} <= set(quiet), "quiet through the month after the rotation"
    assert any(c["exp_alerts"] for c in cases), "fires once overdue"


def test_promtool_check_metrics_of_the_collector(tmp_path: Path) -> None:
    """Every family keysyncd exports, from a state with nodes, drift, deferrals, durations."""
    exposition = sample_exposition(tmp_path)
    assert b"keysyncd_drift_events_total" in exposition
    result = run_promtool("check", "metrics", stdin=exposition)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_promtool_check_metrics_of_a_real_run(tmp_path: Path) -> None:
    """The textfile keysyncd writes after init and rotate passes promtool check metrics."""
    textfile = tmp_path / "metrics" / "keysyncd.prom"
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "repositories": [
                    {"name": "fernet-tokens", "path": str(tmp_path / "keys"), "max_active_keys": 5}
                ],
                "metrics": {"textfile": str(textfile)},
            }
        )
    )
    for command in (["init"], ["rotate"], ["verify"]):
        result = subprocess.run(
            [sys.executable, "-m", "keysyncd", "-c", str(config), *command],
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
    exposition = textfile.read_bytes()
    for name in ("keysyncd_nodes", "keysyncd_generation", "keysyncd_last_success_age_seconds"):
        assert f"\n{name}{{".encode() in exposition, name
    checked = run_promtool("check", "metrics", stdin=exposition)
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()


# --- completions and man page, and what the role copies to build keysyncd ----------------


def test_the_role_installs_completions_and_the_man_page_generated_by_keysyncd() -> None:
    docs = host_variables("ctl0").get("_keysyncd_docs", _Jinja())
    assert [(d["argv"], d["dest"]) for d in docs] == [
        (["completion", "bash"], "/usr/share/bash-completion/completions/keysyncd"),
        (["completion", "zsh"], "/usr/local/share/zsh/site-functions/_keysyncd"),
        (["manpage"], "/usr/local/share/man/man1/keysyncd.1"),
    ]
    skipped = host_variables("ctl0", keysyncd_zsh_completion="").get("_keysyncd_docs", _Jinja())
    assert [d["argv"] for d in skipped] == [["completion", "bash"], ["manpage"]]
    tasks = {task["name"]: task for _, task in role_tasks()}
    generate = tasks["Generate keysyncd's shell completions and man page"]
    argv = generate["ansible.builtin.command"]["argv"]
    assert argv == "{{ [keysyncd_venv ~ '/bin/keysyncd'] + item.argv }}"
    assert generate["changed_when"] is False and generate["check_mode"] is False
    install = tasks["Install keysyncd's shell completions and man page"]
    assert install["ansible.builtin.copy"]["dest"] == "{{ item.item.dest }}"
    assert install["ansible.builtin.copy"]["mode"] == "0644"


def test_the_role_copies_everything_the_wheel_is_built_from() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    [copy] = [
        task
        for _, task in role_tasks()
        if task["name"] == "Copy the keysyncd sources from this checkout"
    ]
    assert set(copy["loop"]) == {"pyproject.toml", "README.md", "keysyncd"} | folders


def test_systemd_waits_longer_than_keysyncd_needs_to_stop(renderer: Any) -> None:
    """The shipped unit and the role's drop-in give keysyncd more time after SIGTERM than
    its stop budget (the current step, then the hard exit ending every hook's group), and
    check-config's warning compares hook timeouts with that same TimeoutStopSec."""
    from keysyncd.commands.daemon import STOP_BUDGET, STOP_TIMEOUT
    from keysyncd.io.runtime.children import UNIT_TIMEOUT_STOP_SEC
    from keysyncd.io.runtime.hooks import GROUP_GRACE

    unit = (ROOT / "systemd" / "keysyncd.service").read_text(encoding="utf-8")
    [shipped] = re.findall(r"^TimeoutStopSec=(\d+)$", unit, re.M)
    drop_in = render(renderer, "keysyncd.service.conf.j2", controller_variables(renderer))
    [role] = re.findall(r"^TimeoutStopSec=(\d+)$", drop_in, re.M)
    assert float(shipped) == float(role) == UNIT_TIMEOUT_STOP_SEC
    assert STOP_BUDGET < UNIT_TIMEOUT_STOP_SEC, "systemd would SIGKILL a stopping keysyncd"
    assert 2 * GROUP_GRACE < STOP_TIMEOUT, "a stopped hook's group ends well within a step"


def test_the_unit_names_the_man_page_and_keeps_the_keystone_faq() -> None:
    """``systemctl help keysyncd`` opens keysyncd(1); the keystone FAQ link stays."""
    unit = (ROOT / "systemd" / "keysyncd.service").read_text(encoding="utf-8")
    [section] = re.findall(r"^\[Unit\]\n(.*?)^\[", unit, re.M | re.S)
    documentation = [
        uri for line in re.findall(r"^Documentation=(.*)$", section, re.M) for uri in line.split()
    ]
    assert documentation == [
        "man:keysyncd(1)",
        "https://docs.openstack.org/keystone/latest/admin/fernet-token-faq.html",
    ]
    from keysyncd.commands.docs import manpage  # the page it names is the one keysyncd prints

    assert manpage().splitlines()[0].startswith(".TH KEYSYNCD 1 ")
