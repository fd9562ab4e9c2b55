"""Keystone's own key repository logic, transcribed from keystone/common/fernet_utils.py.

The tests carry the few functions that matter, kept as close to upstream as possible: the
loader (list, read integer-named files, ignore empty ones, primary first) and fernet_setup /
fernet_rotate. keystone 30.0.0 itself now installs from the package registry (checked
2026-12-08: about 70 packages, cryptography upgraded; ``keystone.conf.configure(CONF)``, then
``FernetUtils(repo, n, "fernet_tokens").load_keys()`` and ``TokenFormatter().pack/unpack`` run
in-process): calling it instead of this transcription is open work (issue 22 asks for it).
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet, MultiFernet


def key_names(key_repo: str | os.PathLike[str]) -> list[str]:
    """Return the names keystone would load as keys: those for which ``int(name)`` works."""
    names = []
    for name in os.listdir(key_repo):
        try:
            int(name)
        except ValueError:
            continue
        names.append(name)
    return names


def get_key_files(key_repo: str) -> tuple[dict[int, str], dict[int, str]]:
    """Return (index -> path, index -> key) exactly as keystone's _get_key_files does."""
    key_files: dict[int, str] = {}
    keys: dict[int, str] = {}
    for filename in os.listdir(key_repo):
        path = os.path.join(key_repo, str(filename))
        if os.path.isfile(path):
            with open(path) as key_file:
                try:
                    key_id = int(filename)
                except ValueError:
                    pass
                else:
                    key = key_file.read()
                    if len(key) == 0:
                        continue  # keystone logs "Ignoring empty key" and skips it
                    key_files[key_id] = path
                    keys[key_id] = key
    return key_files, keys


def load_keys(key_repo: str) -> list[str]:
    """Return the keys primary first, as keystone's FernetUtils.load_keys does."""
    _, keys = get_key_files(key_repo)
    return [key for _, key in sorted(keys.items(), key=lambda item: item[0], reverse=True)]


def multifernet(key_repo: str) -> MultiFernet:
    """Return the MultiFernet keystone would build; raise ValueError on a malformed key."""
    return MultiFernet([Fernet(key) for key in load_keys(key_repo)])


def _create_new_key(key_repo: str) -> None:
    key = Fernet.generate_key()
    old_umask = os.umask(0o177)
    try:
        with open(os.path.join(key_repo, "0.tmp"), "w") as handle:
            handle.write(key.decode("utf-8"))
            handle.flush()
        os.rename(os.path.join(key_repo, "0.tmp"), os.path.join(key_repo, "0"))
    finally:
        os.umask(old_umask)


def fernet_setup(key_repo: str, max_active_keys: int = 3) -> None:
    """keystone-manage fernet_setup: create 0, then rotate once."""
    os.makedirs(key_repo, mode=0o700, exist_ok=True)
    _create_new_key(key_repo)
    fernet_rotate(key_repo, max_active_keys)


def fernet_rotate(key_repo: str, max_active_keys: int = 3) -> None:
    """keystone-manage fernet_rotate, the upstream algorithm step by step."""
    key_files, _ = get_key_files(key_repo)
    current_primary_key = max(key_files.keys())
    new_primary_key = current_primary_key + 1
    os.rename(key_files[0], os.path.join(key_repo, str(new_primary_key)))
    key_files.pop(0)
    key_files[new_primary_key] = os.path.join(key_repo, str(new_primary_key))
    _create_new_key(key_repo)
    keys = sorted(key_files.keys(), reverse=True)
    while len(keys) > (max_active_keys - 1):
        index_to_purge = keys.pop()
        os.remove(key_files[index_to_purge])


def keystone_rotation_indices(indices: set[int], max_active_keys: int) -> set[int]:
    """Return the index set keystone's fernet_rotate leaves, given the set before."""
    new_primary = max(indices) + 1
    kept = sorted((indices - {0}) | {new_primary}, reverse=True)[: max_active_keys - 1]
    return set(kept) | {0}
