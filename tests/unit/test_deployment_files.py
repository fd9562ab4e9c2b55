"""Checks of the deployment files: they exist and parse, the systemd unit, and what the role
installs beside keysyncd (completions, the man page, the sources the wheel is built from).

The role's templates: test_ansible_templates.py; its tasks and the Ansible tools:
test_ansible_tasks.py; the Prometheus rules and promtool: test_prometheus_rules.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.deployment import (
    ANSIBLE,
    INVENTORY,
    MONITORING,
    ROLE,
    ROOT,
    RULES,
    _Jinja,
    controller_variables,
    host_variables,
    load_yaml,
    render,
    role_tasks,
    yaml_files,
)


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
