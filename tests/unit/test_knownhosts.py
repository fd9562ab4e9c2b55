"""known_hosts as ssh reads it: several keys per host, hashed names, @revoked, bad lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest

from keysyncd.errors import LocalFileError
from keysyncd.io.remote.knownhosts import load_known_hosts, parse_known_hosts


def new_key(tmp_path: Path, name: str) -> paramiko.PKey:
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


def line(host: str, key: paramiko.PKey) -> str:
    return f"{host} {key.get_name()} {key.get_base64()}\n"


def test_a_host_may_list_several_keys_of_one_type(tmp_path: Path) -> None:
    """During a host key rollover both keys are listed: ssh accepts either, so does keysyncd."""
    old, new = new_key(tmp_path, "old"), new_key(tmp_path, "new")
    known = parse_known_hosts(line("[10.0.0.1]:22", old) + line("[10.0.0.1]:22", new), "kh")
    listed = known.lookup("[10.0.0.1]:22")["ssh-ed25519"]
    assert {key.get_base64() for key in listed} == {old.get_base64(), new.get_base64()}


def test_hashed_and_plain_entries_both_count_and_revoked_never(tmp_path: Path) -> None:
    plain, hashed, revoked = (new_key(tmp_path, name) for name in ("p", "h", "r"))
    hashed_file = tmp_path / "hashed"
    hashed_file.write_text(line("node1", hashed))
    subprocess.run(["ssh-keygen", "-H", "-f", str(hashed_file)], check=True, capture_output=True)
    text = line("node1", plain) + hashed_file.read_text() + line("node1", revoked)
    text += f"@revoked * {revoked.get_name()} {revoked.get_base64()}\n"
    known = parse_known_hosts(text, "kh")
    listed = {key.get_base64() for key in known.lookup("node1")["ssh-ed25519"]}
    assert listed == {plain.get_base64(), hashed.get_base64()}
    assert known.is_revoked(revoked)


@pytest.mark.parametrize(
    "bad", ["node1 ssh-ed25519\n", "node1 ssh-ed25519 !!!!\n", "@oops x y z\n"]
)
def test_a_bad_line_is_named(bad: str) -> None:
    with pytest.raises(LocalFileError, match=r"kh line 2: not a valid known_hosts entry"):
        parse_known_hosts("# first line is a comment\n" + bad, "kh")


def test_hashed_names_match_as_ssh_keygen_hashes_them_and_nothing_else(tmp_path: Path) -> None:
    """ssh-keygen -H is the oracle: every host it hashed is found, with its own key only."""
    keys = {f"[127.0.0.1]:{2200 + number}": new_key(tmp_path, f"k{number}") for number in range(8)}
    hashed_file = tmp_path / "hashed"
    hashed_file.write_text("".join(line(host, key) for host, key in keys.items()))
    subprocess.run(["ssh-keygen", "-H", "-f", str(hashed_file)], check=True, capture_output=True)
    assert "127.0.0.1" not in hashed_file.read_text(), "ssh-keygen hashed every name"
    known = parse_known_hosts(hashed_file.read_text(), "kh")
    for host, key in keys.items():
        assert [k.get_base64() for k in known.lookup(host)["ssh-ed25519"]] == [key.get_base64()]
    assert known.lookup("[127.0.0.1]:2299") == {}
    assert known.lookup("[127.0.0.1]:220") == {}


def test_a_changed_known_hosts_file_is_read_again(tmp_path: Path) -> None:
    """The parsed file is reused only while its content is the same: a key added (or a
    host removed) by the operator counts at the next action, in the daemon too."""
    first, second = new_key(tmp_path, "a"), new_key(tmp_path, "b")
    path = tmp_path / "known_hosts"
    path.write_text(line("node1", first))
    path.chmod(0o600)
    assert set(load_known_hosts(path).lookup("node1")) == {"ssh-ed25519"}
    path.write_text(line("node2", second))
    changed = load_known_hosts(path)
    assert changed.lookup("node1") == {}
    assert [k.get_base64() for k in changed.lookup("node2")["ssh-ed25519"]] == [second.get_base64()]


def test_a_host_without_a_usable_key_is_told_which_rule_refused(tmp_path: Path) -> None:
    """Only @revoked keys, only a wildcard, a negation that excludes it, nothing at all: each
    refusal names its rule (and the line of a pattern)."""
    revoked, wild, other = (new_key(tmp_path, name) for name in ("r", "w", "o"))
    text = line("node1", revoked) + f"@revoked * {revoked.get_name()} {revoked.get_base64()}\n"
    text += line("*.example.org,[10.0.0.?]:2222", wild)
    text += line("!node4,node5", other)
    known = parse_known_hosts(text, "kh")
    assert not known.lookup("node1")
    assert known.why_unusable("node1") == "every host key listed for node1 is marked @revoked"
    assert not known.lookup("ctl.example.org")
    assert known.why_unusable("ctl.example.org") == (
        "ctl.example.org is named only by a wildcard pattern ('*.example.org', line 3), which "
        "keysyncd does not accept: list the host by its exact name"
    )
    assert "wildcard pattern ('[10.0.0.?]:2222', line 3)" in known.why_unusable("[10.0.0.7]:2222")
    assert not known.lookup("node4")
    assert "a negated pattern that excludes it ('!node4', line 4)" in known.why_unusable("node4")
    assert known.lookup("node5")
    assert known.why_unusable("node6") == "node6 is not listed"
