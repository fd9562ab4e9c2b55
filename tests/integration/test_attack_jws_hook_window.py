"""Attacks on the window a before_rotate hook opens between the JWS gate (every node
verified holding every new public key) and phase 2 (each node gets its new private key),
against a real OpenSSH fleet and keystone's own JWS code (tests/keystone_jws.py).

A before_rotate hook may run for minutes (a config-management run, a backup); a node
changed during it must not receive, nor let another node receive, a private key whose
public half some node no longer holds (SPEC rule 1 for JWS, section 9).
"""

from __future__ import annotations

from pathlib import Path

from keysyncd.actions import operations
from tests.integration.test_after_rotate import script, set_hooks
from tests.integration.test_jws_hooks import names, rotate, signing
from tests.integration.test_rotate import reports
from tests.jws_world import World, act
from tests.keystone_jws import sign, validate


def test_a_public_key_removed_during_before_rotate_is_not_signed_with(
    world: World, tmp_path: Path
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    victim = world.public("node2")
    before = sorted(p.name for p in victim.iterdir())
    kept = tmp_path / "kept"
    kept.write_text("".join(f"{name}\n" for name in before))
    # the hook (say, config management) puts node2's public directory back as it was:
    # the public keys phase 1 just added there go
    set_hooks(
        world.path,
        before_rotate=[
            script(
                tmp_path / "reset",
                f'cd "{victim}" && for f in *; do grep -qx "$f" "{kept}" || rm -f -- "$f"; done',
            )
        ],
    )
    before_keys = signing(world)
    assert rotate(world) == 1
    report = reports(world.path, "rotate")[-1]
    assert report["outcome"] == "deferred", report
    assert signing(world) == before_keys, "a private key changed although node2 lacks its public"
    for signer in names(world):
        token = sign(str(world.private(signer)), "attacker")
        for reader in names(world):
            # keystone on ``reader`` must accept a token ``signer`` now issues
            validate(token, str(world.public(reader)))

    # without the hook the next rotation heals node2 first (phase 1) and rotates
    set_hooks(world.path)
    assert rotate(world) == 0
    assert all(signing(world)[n] != before_keys[n] for n in names(world))
    for signer in names(world):
        token = sign(str(world.private(signer)), "healed")
        for reader in names(world):
            validate(token, str(world.public(reader)))
