"""The JWS model (core/jws.py), its node plans (core/jwsplan.py), keys and config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keysyncd.config import parse_config
from keysyncd.core import jws
from keysyncd.core.jwskeys import generate_pair, public_of_private, public_problem, same_public_key
from keysyncd.core.jwsplan import JwsExpected, JwsView, diff_jws
from keysyncd.core.keyring import digest_of
from keysyncd.core.view import Entry, EntryType
from keysyncd.errors import ConfigError

NODES = ("a", "b", "c")


def pair(node: str, serial: int) -> jws.Pair:
    return jws.Pair(
        node,
        serial,
        jws.public_name(node, serial),
        f"pub-{node}{serial}",
        f"priv-{node}{serial}",
        0.0,
    )


@pytest.mark.parametrize("algorithm", jws.ALGORITHMS)
def test_pairs_are_made_as_keystone_makes_them(algorithm: str) -> None:
    private, public = generate_pair(algorithm)
    assert private.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert public.startswith(b"-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    assert public_problem(public, algorithm) is None
    derived = public_of_private(private, algorithm)
    assert derived is not None and same_public_key(derived, public)
    other = "EdDSA" if algorithm != "EdDSA" else "ES256"
    assert public_problem(public, other) is not None


@pytest.mark.parametrize(
    "content", [b"", b"junk", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_what_is_no_public_key_is_said_so(content: bytes) -> None:
    assert public_problem(content, "ES256") is not None


def test_a_rotation_installs_then_retires_after_the_retention() -> None:
    state = jws.with_next(jws.JwsState(), [pair(n, 1) for n in NODES])
    assert set(state.public_keys()) == {"a-1.pem", "b-1.pem", "c-1.pem"}
    for node in NODES:
        state = jws.installed(state, node, 10.0)
    assert not state.next and not state.retiring
    state = jws.with_next(state, [pair(n, 2) for n in NODES])
    assert len(state.public_keys()) == 6, "old and new public keys, everywhere"
    state = jws.installed(state, "a", 20.0)
    assert state.retiring["a-1.pem"].stopped_at == 20.0
    assert state.private_digest("a") == "priv-a2" and state.private_digest("b") == "priv-b1"
    assert jws.plan_retirement(state, 100.0, 119.9).retire == ()
    assert jws.plan_retirement(state, 100.0, 120.0).retire == ("a-1.pem",)


def test_a_shared_key_is_never_retired_while_a_node_signs_with_it() -> None:
    """An adopted fleet may share one pair: when one node moves on, the others still sign
    with it; it may go only a retention after the LAST of them stopped."""
    shared = jws.Pair("a", 0, "public.pem", "pub-shared", "priv-shared", 0.0)
    state = jws.JwsState(signing={n: replace(shared, node=n) for n in NODES})
    state = jws.with_next(state, [pair("a", 1)])
    state = jws.installed(state, "a", 10.0)  # a moved on; b and c still sign with it
    assert "public.pem" in state.retiring
    assert jws.plan_retirement(state, 5.0, 1000.0).retire == (), "b and c still sign with it"
    state = jws.with_next(state, [pair("b", 1), pair("c", 1)])
    state = jws.installed(state, "b", 20.0)
    state = jws.installed(state, "c", 30.0)  # the last one stopped at 30
    assert jws.plan_retirement(state, 5.0, 34.9).retire == ()
    assert jws.plan_retirement(state, 5.0, 35.0).retire == ("public.pem",)


def test_a_new_name_is_never_one_already_taken() -> None:
    """Names seen in the store or on a node (not only the journal's) are never reused: a
    stray or adopted ``a-2.pem`` on a node would otherwise be replaced by a new key."""
    state = jws.with_next(jws.JwsState(), [pair("a", 1)])
    assert jws.next_serial(state, "a") == 2
    assert jws.next_serial(state, "a", taken={"a-2.pem", "a-3.pem"}) == 4
    with pytest.raises(ValueError, match="already in use"):
        jws.with_next(state, [replace(pair("b", 1), public="a-1.pem")])
    assert jws.adopted_serials(["a-7.pem", "a-x.pem", "b-2.pem", "zz-9.pem"], NODES) == {
        "a": 7,
        "b": 2,
    }


def test_a_removed_node_keeps_its_public_key_for_the_retention() -> None:
    state = jws.with_next(jws.JwsState(), [pair(n, 1) for n in NODES])
    for node in NODES:
        state = jws.installed(state, node, 0.0)
    state = jws.removed_nodes(state, ("a", "b"), 50.0)
    assert "c" not in state.signing and state.retiring["c-1.pem"].stopped_at == 50.0
    assert "c-1.pem" in state.public_keys()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["rotate", "install", "retire", "tick"]), st.sampled_from(NODES)),
        max_size=40,
    )
)
def test_a_key_in_use_is_never_dropped(steps: list[tuple[str, str]]) -> None:
    """Whatever happens, every node's signing and waiting public keys stay expected, and a
    retiring key goes only after its node switched plus the retention."""
    state, now, retention = jws.JwsState(), 0.0, 5.0
    state = jws.with_next(state, [pair(n, 1) for n in NODES])
    for step, node in steps:
        if step == "rotate":
            fresh = [
                jws.Pair(
                    n,
                    jws.next_serial(state, n),
                    jws.public_name(n, jws.next_serial(state, n)),
                    "p",
                    "q",
                    now,
                )
                for n in jws.needing_pairs(state, NODES, True)
            ]
            state = jws.with_next(state, fresh)
        elif step == "install" and node in state.next:
            state = jws.installed(state, node, now)
        elif step == "retire":
            due = jws.plan_retirement(state, retention, now)
            for name in due.retire:
                stopped = state.retiring[name].stopped_at
                assert stopped is not None and stopped + retention <= now
            state = jws.without(state, due.retire)
        now += 1.0
        expected = state.public_keys()
        for group in (state.signing, state.next):
            for kept in group.values():
                assert kept.public in expected


def view(public: dict[str, bytes], private: bytes | None) -> JwsView:
    entries = tuple(
        Entry(name, EntryType.FILE, 0o600, len(content), digest=digest_of(content))
        for name, content in public.items()
    )
    key = (
        None
        if private is None
        else Entry("private.pem", EntryType.FILE, 0o600, len(private), digest=digest_of(private))
    )
    return JwsView(0o700, entries, 0o700, key)


def test_the_public_directory_must_hold_exactly_the_keys_and_nothing_else() -> None:
    expected = JwsExpected(
        {"a-1.pem": digest_of(b"A"), "b-1.pem": digest_of(b"B")}, digest_of(b"private")
    )
    exact = view({"a-1.pem": b"A", "b-1.pem": b"B"}, b"private")
    assert diff_jws(expected, exact).in_sync
    stray = view({"a-1.pem": b"A", "b-1.pem": b"B", ".keysyncd-1.tmp": b"half"}, b"private")
    plan = diff_jws(expected, stray)
    assert plan.delete == (".keysyncd-1.tmp",) and plan.holds_every_public_key
    missing = diff_jws(expected, view({"a-1.pem": b"A"}, b"private"))
    assert missing.add == ("b-1.pem",) and not missing.holds_every_public_key
    foreign = diff_jws(expected, view({"a-1.pem": b"A", "b-1.pem": b"B"}, b"someone else's"))
    assert foreign.private is not None and not foreign.in_sync
    directory = JwsView(0o700, (Entry("dir", EntryType.DIRECTORY, 0o700),), 0o700, None)
    assert diff_jws(JwsExpected({}, None), directory).invalid == ("dir",)


def config(repository: dict[str, object]) -> None:
    document = {
        "state_dir": "/var/lib/k",
        "repositories": [
            {"name": "j", "kind": "jws", "path": "/etc/keystone/jws-keys", **repository}
        ],
    }
    parse_config(document, Path("/c.yaml"))


def test_jws_config_rejects_what_does_not_apply() -> None:
    config({"algorithm": "ES384", "private_path": "/p", "public_path": "/q"})
    with pytest.raises(ConfigError, match=r"max_active_keys': does not apply to kind jws"):
        config({"max_active_keys": 3})
    with pytest.raises(ConfigError, match=r"algorithm': must be one of ES256, ES384"):
        config({"algorithm": "HS256"})
    document = {
        "state_dir": "/v",
        "repositories": [{"name": "f", "path": "/k", "algorithm": "ES256"}],
    }
    with pytest.raises(ConfigError, match=r"algorithm': applies to kind jws only"):
        parse_config(document, Path("/c.yaml"))


@pytest.mark.parametrize(
    ("private", "public"),
    [("/k/jws", "/k/jws"), ("/k/jws/private", "/k/jws"), ("/k/jws", "/k/jws/public/x")],
)
def test_private_and_public_directories_must_be_apart(private: str, public: str) -> None:
    """keystone reads every file in the public directory: private.pem must never be in it."""
    document = {
        "state_dir": "/var/lib/keysyncd",
        "report_dir": "/var/lib/keysyncd/reports",
        "repositories": [
            {
                "name": "jws-keys",
                "kind": "jws",
                "path": "/etc/keystone/jws-keys",
                "private_path": private,
                "public_path": public,
            }
        ],
    }
    with pytest.raises(
        ConfigError, match=r"public_path.*must be apart from the private directory \(private_path\)"
    ):
        parse_config(document, Path("/etc/keysyncd/config.yaml"))


def test_private_and_public_paths_apply_to_nodes_without_their_own_path() -> None:
    document = {
        "state_dir": "/var/lib/k",
        "repositories": [
            {
                "name": "j",
                "kind": "jws",
                "path": "/etc/keystone/jws-keys",
                "private_path": "/etc/keystone/jws-private",
                "public_path": "/srv/jws-public",
            }
        ],
    }
    repository = parse_config(document, Path("/c.yaml")).repositories[0]
    assert repository.jws_directories() == (
        Path("/etc/keystone/jws-private"),
        Path("/srv/jws-public"),
    )
    assert repository.jws_directories(Path("/opt/keys")) == (
        Path("/opt/keys/private"),
        Path("/opt/keys/public"),
    )
    default = parse_config(
        {**document, "repositories": [{"name": "j", "kind": "jws", "path": "/k"}]},
        Path("/c.yaml"),
    ).repositories[0]
    assert default.jws_directories() == (Path("/k/private"), Path("/k/public"))
