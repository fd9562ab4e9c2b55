"""The wheel: keysyncd's layers and the deployment files, never keysyncd.testing; metadata with
classifiers and project URLs; and a clean virtualenv where the installed command works.

The wheel is built from a copy of the source tree (a stale build/ directory in the checkout
must not leak into it), with pip and build isolation, as a user would build it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "keysyncd", "schemas", "systemd", "monitoring")


def test_the_package_list_is_every_package_on_disk_but_testing() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "keysyncd").rglob("__init__.py")
    }
    assert "keysyncd.testing" in on_disk
    mapped = pyproject["tool"]["setuptools"]["package-dir"]
    assert listed == (on_disk - {"keysyncd.testing"}) | set(mapped)
    assert {name: (ROOT / folder).is_dir() for name, folder in mapped.items()} == dict.fromkeys(
        mapped, True
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [path] = out.glob("keysyncd-*.whl")
    return path


def test_the_wheel_holds_the_layers_and_the_deployment_files_not_testing(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [name for name in names if name.startswith("keysyncd/testing")]
    for layer in ("core", "config", "io", "actions", "commands"):
        assert f"keysyncd/{layer}/__init__.py" in names, layer
    for name in (
        "keysyncd/py.typed",
        "keysyncd/share/__init__.py",
        "keysyncd/share/schemas/report.schema.json",
        "keysyncd/share/schemas/report.v1.schema.json",
        "keysyncd/share/systemd/keysyncd.service",
        "keysyncd/share/monitoring/keysyncd.rules.yml",
        "keysyncd/share/monitoring/keysyncd.rules.test.yml",
        "keysyncd/share/monitoring/keysyncd.grafana.json",
        "keysyncd/share/monitoring/README.md",
    ):
        assert name in names, name
    assert not [name for name in names if name.startswith(("tests/", "bench/", "build/"))]


def test_the_wheel_metadata_has_classifiers_urls_and_the_entry_point(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    text = archive.read(metadata).decode()
    classifiers = [line for line in text.splitlines() if line.startswith("Classifier: ")]
    assert "Classifier: Operating System :: POSIX :: Linux" in classifiers
    assert "Classifier: Topic :: System :: Systems Administration" in classifiers
    assert len(classifiers) >= 8
    urls = [line for line in text.splitlines() if line.startswith("Project-URL: ")]
    assert {url.split(": ")[1].split(",")[0] for url in urls} >= {"Homepage", "Source", "Issues"}
    assert "Requires-Dist: shtab" in text
    [entry_points] = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "keysyncd = keysyncd.commands.cli:main" in archive.read(entry_points).decode()


def test_the_wheel_carries_the_license_and_the_python_versions(wheel: Path) -> None:
    """License-Expression and the LICENSE text (PEP 639), Requires-Python and the version
    classifiers; the README states the same versions."""
    archive = zipfile.ZipFile(wheel)
    [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: Apache-2.0" in headers
    assert "License-File: LICENSE" in headers
    assert not [h for h in headers if h.startswith(("License: ", "Classifier: License ::"))]
    [license_file] = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    text = archive.read(license_file).decode()
    assert text == (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole text, not a notice
    assert "Requires-Python: >=3.11" in headers
    versions = [
        h.removeprefix("Classifier: Programming Language :: Python :: ")
        for h in headers
        if re.fullmatch(r"Classifier: Programming Language :: Python :: 3\.\d+", h)
    ]
    assert versions == ["3.11", "3.12"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "with Python 3.11 or later (declared for 3.11 and 3.12;" in readme


def test_a_clean_virtualenv_runs_the_installed_command(wheel: Path, tmp_path: Path) -> None:
    """pip install of the wheel (dependencies from the index), then keysyncd --version,
    check-config on the shipped config.yaml, completion and the shipped files."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [venv / "bin" / "keysyncd", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,  # never the checkout: the installed package must be used
            env=env,
            check=False,
        )

    version = run("--version")
    assert (version.returncode, version.stdout) == (0, "keysyncd 0.1.0\n")
    checked = run("-c", str(ROOT / "config.yaml"), "check-config")
    # this machine is no controller: the example's files are missing, each named on a line
    assert checked.returncode == 2, checked.stderr
    assert checked.stdout == "" and "Traceback" not in checked.stderr
    # (and warnings: its hook timeouts are longer than the unit's TimeoutStopSec)
    findings = ("keysyncd: error: ", "keysyncd: warning: ")
    assert all(line.startswith(findings) for line in checked.stderr.splitlines())
    if not Path("/etc/keysyncd/known_hosts").exists():
        assert "known_hosts /etc/keysyncd/known_hosts does not exist" in checked.stderr
    assert run("completion", "bash").stdout.endswith(" -F _shtab_keysyncd keysyncd\n")
    shipped = subprocess.run(
        [venv / "bin" / "python", "-c", "from keysyncd.share import share_path as p; "
         "print(p('monitoring')); import importlib.util as u; "
         "print(u.find_spec('keysyncd.testing'))"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env, check=True,
    )  # fmt: skip
    where, testing = shipped.stdout.splitlines()
    assert Path(where, "keysyncd.rules.yml").is_file()
    assert Path(where).is_relative_to(venv)
    assert testing == "None"


def test_the_source_tree_finds_the_shipped_files_too() -> None:
    from keysyncd.share import share_path

    assert share_path("schemas") == ROOT / "schemas"
    assert (share_path("systemd") / "keysyncd.service").is_file()
    with pytest.raises(ValueError, match="no shipped files called 'tests'"):
        share_path("tests")
    assert os.path.isdir(share_path("monitoring"))
