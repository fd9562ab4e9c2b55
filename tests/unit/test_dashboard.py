"""The Grafana dashboard shipped with the monitoring files (monitoring/keysyncd.grafana.json).

Every panel's query may name only metrics keysyncd exports: the names are taken from the
text keysyncd's own collector writes (what a scrape or the textfile holds), not from a list
kept by hand, so a renamed metric fails here. promtool parses every query as a recording
rule, which also keeps the name extraction below honest (it only reads valid PromQL).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.metrics_sample import sample_exposition

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "keysyncd.grafana.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# the one Grafana variable the queries use; promtool sees it as "every repository"
VARIABLES = {"$repository": ".*"}

# PromQL words that look like names but are not metrics (functions are recognised by the
# "(" that follows them, label lists and matchers are removed before)
KEYWORDS = {"bool", "and", "or", "unless", "offset", "by", "without", "on", "ignoring"}
KEYWORDS |= {"group_left", "group_right", "inf", "nan"}


def metric_names(expression: str) -> set[str]:
    """Return the metric names ``expression`` selects (no functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)  # strings: label values
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery windows
    label_lists = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    text = re.sub(label_lists, " ", text)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.:$])[A-Za-z_:][\w:]*", text):
        word = match.group()
        if word.lower() in KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def test_the_name_extraction_finds_metrics_and_nothing_else() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (action, le) (rate(keysyncd_x_bucket{action="a b"}'
        "[5m] offset 1h))) / on (instance) group_left (node) keysyncd_y > bool 1e3"
        " unless keysyncd_z[1h:5m]"
    ) == {"keysyncd_x_bucket", "keysyncd_y", "keysyncd_z"}
    assert metric_names('time() - up{job="keysyncd"}') == {"up"}
    assert metric_names("keysyncd_nodes - keysyncd_nodes_in_sync") == {
        "keysyncd_nodes",
        "keysyncd_nodes_in_sync",
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Sample name -> label names, parsed from the metrics text keysyncd writes for a
    repository with keys in every role, a verified node, a rotation and durations."""
    text = sample_exposition(tmp_path_factory.mktemp("dashboard")).decode()
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def dashboard() -> dict[str, Any]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def query_panels() -> list[dict[str, Any]]:
    panels = dashboard()["panels"]
    nested = [p for row in panels for p in row.get("panels", [])]
    return [p for p in [*panels, *nested] if p["type"] != "row"]


def expressions() -> list[tuple[str, str]]:
    """(panel title and refId, expression) for every target of every panel."""
    return [
        (f"{panel['title']} {target['refId']}", target["expr"])
        for panel in query_panels()
        for target in panel["targets"]
    ]


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    document = dashboard()
    assert 36 <= document["schemaVersion"] <= 41
    assert document["uid"] == "keysyncd" and document["title"] == "keysyncd"
    [source] = document["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    panels = [
        *document["panels"],
        *(p for row in document["panels"] for p in row.get("panels", [])),
    ]
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(panels), "every panel has an id of its own"
    [variable] = [v for v in document["templating"]["list"] if v["name"] == "repository"]
    assert variable["type"] == "query" and variable["datasource"] == DATASOURCE
    assert variable["query"]["query"] == variable["definition"]
    match = re.fullmatch(r"label_values\((keysyncd_\w+), repository\)", variable["definition"])
    assert match is not None, variable["definition"]


def test_every_panel_queries_prometheus_and_every_target_has_an_expression() -> None:
    panels = query_panels()
    assert len(panels) >= 6
    for panel in panels:
        assert panel["title"].strip() and panel["description"].strip(), panel["id"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no target"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_every_query_names_only_metrics_keysyncd_exports(exported: dict[str, set[str]]) -> None:
    used: set[str] = set()
    for where, expression in expressions():
        names = metric_names(expression)
        assert names, f"{where}: names no metric"
        unknown = names - set(exported)
        assert not unknown, f"{where}: keysyncd exports no {sorted(unknown)}"
        for name in names:  # a query filters by repository wherever the metric has one
            assert ("repository" in exported[name]) == (
                re.search(rf'\b{name}\{{[^}}]*repository=~"\$repository"', expression) is not None
            ), (where, name)
        used |= names
    assert {
        "keysyncd_key_age_seconds",
        "keysyncd_nodes_in_sync",
        "keysyncd_nodes",
        "keysyncd_next_rotation_timestamp_seconds",
        "keysyncd_rotation_overdue_timestamp_seconds",
        "keysyncd_last_success_timestamp_seconds",
        "keysyncd_action_duration_seconds_bucket",
    } <= used
    [variable] = [v for v in dashboard()["templating"]["list"] if v["name"] == "repository"]
    [metric] = re.findall(r"label_values\((\w+), repository\)", variable["definition"])
    assert "repository" in exported[metric], metric


def test_the_check_would_catch_a_metric_keysyncd_does_not_export(
    exported: dict[str, set[str]],
) -> None:
    # the names keysyncd renamed once (monitoring/README.md) are not exported any more
    for stale in ("keysyncd_nodes_total", "keysyncd_seconds_since_last_success"):
        assert metric_names(f'{stale}{{repository=~"$repository"}} > 0') - set(exported) == {stale}


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    """Each expression, the Grafana variable replaced, as a recording rule."""
    rules = []
    for index, (_, expression) in enumerate(expressions()):
        for variable, value in VARIABLES.items():
            expression = expression.replace(variable, value)
        assert "$" not in expression, f"a Grafana variable promtool cannot see: {expression}"
        rules.append({"record": f"keysyncd_dashboard:query_{index}", "expr": expression})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    path_dirs = f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"
    promtool = shutil.which("promtool", path=path_dirs)
    assert promtool is not None, "promtool is not installed: run scripts/bootstrap"
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert f"SUCCESS: {len(rules)} rules found".encode() in result.stdout
