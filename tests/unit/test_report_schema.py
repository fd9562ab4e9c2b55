"""The report schema speaks keysyncd's vocabulary: every action, trigger, outcome, node status
and reason keysyncd can write is one the schema (version 2, and version 1 for the words it
had) accepts, and the schema accepts no word keysyncd does not have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keysyncd.core.vocabulary import Action, NodeStatus, Outcome, Reason, Trigger

ROOT = Path(__file__).resolve().parents[2]


def schema(name: str) -> dict:
    return json.loads((ROOT / "schemas" / name).read_text())


@pytest.mark.parametrize("name", ["report.schema.json", "report.v1.schema.json"])
def test_the_schemas_enums_are_the_vocabulary(name: str) -> None:
    document = schema(name)
    properties = document["properties"]
    node = document["$defs"]["node"]["properties"]
    assert properties["action"]["enum"] == [str(word) for word in Action]
    assert properties["trigger"]["enum"] == [str(word) for word in Trigger]
    assert properties["outcome"]["enum"] == [str(word) for word in Outcome]
    assert sorted(node["status"]["enum"]) == sorted(str(word) for word in NodeStatus)
    assert node["reason"]["enum"] == [None, *(str(word) for word in Reason)]
