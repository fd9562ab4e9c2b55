"""The Prometheus rules: every alert, the metrics and labels they read exist, and promtool
(installed by the test command, see scripts/bootstrap): ``check rules --lint-fatal``, the
rules' unit tests (``test rules``) and ``check metrics`` on the metrics of a real run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from keysyncd.core.journal import Durations, NodeRecord, RepositoryState
from keysyncd.core.policy import KeyHistory
from keysyncd.io.local.state import save_state
from keysyncd.io.runtime.metrics import StateCollector
from tests.deployment import MONITORING, MONTHLY_RULE_TESTS, RULE_TESTS, RULES, load_yaml
from tests.metrics_sample import sample_config, sample_exposition

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
    "KeysyncdRevokedKeyHeld",
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
    config = sample_config(tmp)
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
