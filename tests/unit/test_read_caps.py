"""Read caps per kind of file (keysyncd/core/view.py): a Fernet or credential key file is
read up to MAX_KEY_FILE bytes, a JWS PEM up to MAX_PEM; a valid PEM larger than the Fernet
cap is read whole, a file over its kind's cap is refused in one line naming the file and
the cap. On the controller here; on the nodes in tests/integration/test_read_caps_nodes.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet

from keysyncd.core.jwskeys import generate_pair, public_of_private, public_problem
from keysyncd.core.names import MAX_KEY_FILE, MAX_PEM, show_name, too_large
from keysyncd.core.policy import Policy
from keysyncd.core.view import Entry, EntryType, unread, with_content
from keysyncd.io.local.jwsstore import JwsStore
from tests.local_harness import LocalHarness


def padded(pem: bytes, size: int) -> bytes:
    """Return ``pem`` followed by newlines up to ``size`` bytes: the same key, as keystone
    and keysyncd read it (whitespace around the one PEM block is allowed)."""
    return pem + b"\n" * (size - len(pem))


def test_the_caps_hold_every_key_keystone_makes_with_room_and_nothing_near_a_junk_file() -> None:
    largest = max(max(map(len, generate_pair(a))) for a in ("ES256", "ES384", "ES512", "EdDSA"))
    assert largest <= 400 and 40 * largest <= MAX_PEM
    assert len(Fernet.generate_key()) + 1 <= MAX_KEY_FILE < MAX_PEM


def test_a_valid_pem_larger_than_the_fernet_cap_is_read_whole_from_the_store(
    tmp_path: Path,
) -> None:
    private, public = generate_pair("ES256")
    big_public, big_private = padded(public, MAX_KEY_FILE + 900), padded(private, MAX_PEM)
    assert public_problem(big_public, "ES256") is None
    assert public_of_private(big_private, "ES256") == public
    store = JwsStore(tmp_path / "store", "ES256")
    store.write({"key.pem": big_public}, {"private.pem": big_private})
    scan = store.scan()
    assert scan.problems == ()
    assert scan.public == {"key.pem": big_public}
    assert scan.private == {"private.pem": big_private}


def test_a_pem_over_its_cap_is_refused_in_one_line_naming_the_file_and_the_cap(
    tmp_path: Path,
) -> None:
    private, public = generate_pair("ES256")
    store = JwsStore(tmp_path / "store", "ES256")
    store.write({"key.pem": public}, {"private.pem": private})
    fd = os.open(store.public_dir / "huge.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, padded(public, MAX_PEM + 1))
    os.close(fd)
    scan = store.scan()
    assert scan.problems == (
        f"{store.public_dir}/{show_name('huge.pem')}: larger than {MAX_PEM} bytes: not a key",
    )
    assert "huge.pem" not in scan.public


def test_a_fernet_key_file_over_its_cap_is_refused_naming_the_file_and_the_cap(
    tmp_path: Path,
) -> None:
    harness = LocalHarness(tmp_path, Policy(3, 3600, 0), 1_800_000_000.0)
    harness.init()
    path = harness.repository.path
    fd = os.open(path / "2", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, Fernet.generate_key() + b"\n" * MAX_KEY_FILE)
    os.close(fd)
    problems = harness.repository.scan().problems
    assert problems == (f"{path}/2: larger than {MAX_KEY_FILE} bytes: not a key",)
    assert all("\n" not in problem for problem in problems)


def test_a_node_file_is_judged_against_the_cap_of_its_kind() -> None:
    """What the nodes' readers do with what they read (or do not read)."""
    _, public = generate_pair("ES512")
    large = padded(public, MAX_KEY_FILE + 1)
    entry = Entry("key.pem", EntryType.FILE, 0o600, len(large), 0, 0)
    judged = with_content(entry, large, lambda c: public_problem(c, "ES512"), MAX_PEM)
    assert judged.problem is None and judged.size == len(large) and judged.digest is not None
    as_fernet = with_content(entry, large, lambda c: None)  # a Fernet file: its own cap
    assert as_fernet.problem == too_large(MAX_KEY_FILE)
    huge = Entry("key.pem", EntryType.FILE, 0o600, MAX_PEM + 1, 0, 0)
    assert unread(huge, MAX_PEM).problem == f"larger than {MAX_PEM} bytes: not a key"
    assert unread(huge).problem == f"larger than {MAX_KEY_FILE} bytes: not a key"
