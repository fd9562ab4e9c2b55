"""Attack: what JWS hooks read on their standard input, and the reports, carry no key
material (SPEC rule 6): no PEM, no line of any private key a node signs with, before or
after the rotation, on a real OpenSSH fleet."""

from __future__ import annotations

from pathlib import Path

from keysyncd.actions import operations
from tests.integration.test_after_rotate import script, set_hooks
from tests.integration.test_jws_hooks import names, rotate
from tests.jws_world import World, act


def _secret_lines(world: World) -> set[str]:
    lines: set[str] = set()
    for name in names(world):
        pem = (world.private(name) / "private.pem").read_text()
        lines |= {line for line in pem.splitlines() if line and "-----" not in line}
    return lines


def test_jws_hook_documents_and_reports_hold_no_key_material(world: World, tmp_path: Path) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    secrets = _secret_lines(world)
    seen = tmp_path / "seen"
    seen.mkdir()
    set_hooks(
        world.path,
        before_rotate=[script(tmp_path / "before", f"cat > {seen}/before")],
        after_rotate=[script(tmp_path / "after", f"cat > {seen}/after; exit 3")],
        on_failure=[script(tmp_path / "failure", f"cat > {seen}/failure")],
    )
    assert rotate(world) == 1  # partial: after_rotate failed
    secrets |= _secret_lines(world)
    assert len(secrets) >= 6
    documents = [path.read_text() for path in sorted(seen.iterdir())]
    assert len(documents) == 3
    reports = world.path.parent / "reports"
    documents += [p.read_text(errors="replace") for p in reports.rglob("*") if p.is_file()]
    assert any(reports.rglob("*.json")), "no report to check"
    state = world.path.parent / "state" / "repositories"
    documents += [p.read_text() for p in state.rglob("*.json")]
    for document in documents:
        assert "PRIVATE KEY" not in document and "BEGIN" not in document
        for line in secrets:
            assert line not in document
