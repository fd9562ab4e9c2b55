"""The Ansible role's templates, rendered with Jinja2 set up like Ansible's templar.

The result is fed to keysyncd's own config loader, so a template that renders an invalid
config fails here, not on a controller.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

from keysyncd.config import load_config
from tests.deployment import (
    EXAMPLE_NODES,
    INVENTORY,
    ROLE,
    ROOT,
    _host_key,
    _Jinja,
    controller_variables,
    host_variables,
    load_yaml,
    parse_inventory,
    render,
)


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
        ({**THREE_KINDS[1], "private_path": "/srv/jws/signing"}, "private_path"),
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
