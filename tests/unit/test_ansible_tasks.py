"""The Ansible role's tasks: named, builtin modules, handlers, the restricted key, host keys
read from sshd; ``ansible-lint`` (production profile) and ``ansible-playbook --syntax-check``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.deployment import (
    ANSIBLE,
    INVENTORY,
    ROLE,
    _host_key,
    host_variables,
    load_yaml,
    module_of,
    role_tasks,
)


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
