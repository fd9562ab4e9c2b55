"""The images of the container test tier, built from Debian packages without any registry.

One root file system made by ``debootstrap`` from the mirror apt uses on this machine is
imported as ``keysyncd-test-rootfs``; small Dockerfile layers on top make three images:

- ``keysyncd-test-host``: a whole Debian machine booting ``/sbin/init`` (systemd), with sshd
  as its service. sshd serves a host key from a non-default path (``HostKey`` in
  ``sshd_config.d``), beside a decoy ``/etc/ssh/ssh_host_ed25519_key`` it does not serve, so
  a tool that guesses the host key path instead of asking sshd (``sshd -T``) is caught.
  ``UsePAM no``, as hardened sites run it: a locked account (``!``) cannot log in.
- ``keysyncd-test-node``: the host plus keystone's account (uid/gid 42425, as on kolla)
  pinned to SFTP, and ``/etc/keystone/fernet-keys``.
- ``keysyncd-test-controller``: the host plus keysyncd and its dependencies as wheels built
  on the host (``/opt/keysyncd-wheels``) and installed in ``/opt/keysyncd-test``.

Each tag is a hash of its recipe (and of the wheels), so an image that exists is reused and
a second run builds nothing. Containers never need a registry or the network at run time.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "openssh-sftp-server", "python3",
    "python3-venv", "python3-apt", "python3-packaging", "iproute2", "sudo", "procps",
)  # fmt: skip
KEYSTONE_ID = 42425  # kolla's keystone uid and gid
SERVED_HOST_KEY = "/etc/ssh/served/ssh_host_ed25519_key"
IMAGE_LABEL = "keysyncd.test.image"  # value: rootfs | host | node | controller
DEBOOTSTRAP_TIMEOUT = 900
BUILD_TIMEOUT = 600
ROOT = Path(__file__).resolve().parents[2]

SSHD_CONFIG = f"""\
# keysyncd test machine: sshd as a hardened site runs it (read first: first value wins).
HostKey {SERVED_HOST_KEY}
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
LogLevel VERBOSE
"""
# sshd's key is made on first boot, so every machine has its own; the decoy at the default
# path too (never served: HostKey above names the served one). The unit's own `sshd -t`
# comes after them: it needs the served key.
SSH_UNIT_DROP_IN = f"""\
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'test -e {SERVED_HOST_KEY} || {{ mkdir -p -m 0755 {Path(SERVED_HOST_KEY).parent} && ssh-keygen -q -t ed25519 -N "" -C served -f {SERVED_HOST_KEY}; }}'
ExecStartPre=/bin/sh -c 'test -e /etc/ssh/ssh_host_ed25519_key || ssh-keygen -q -t ed25519 -N "" -C decoy -f /etc/ssh/ssh_host_ed25519_key'
ExecStartPre=/usr/sbin/sshd -t
"""  # noqa: E501
HOST_DOCKERFILE = """\
FROM {base}
LABEL {label}=host
COPY sshd.conf /etc/ssh/sshd_config.d/00-keysyncd-test.conf
COPY ssh-keys.conf /etc/systemd/system/ssh.service.d/keysyncd-test.conf
RUN rm -f /etc/ssh/ssh_host_*key* \\
 && : > /etc/machine-id \\
 && usermod -p '*' root \\
 && install -d -m 0700 /root/.ssh \\
 && systemctl enable ssh.service \\
 && systemctl mask getty@tty1.service console-getty.service serial-getty@.service \\
      systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \\
      fstrim.timer systemd-tmpfiles-clean.timer
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
"""
NODE_DOCKERFILE = """\
FROM {base}
LABEL {label}=node
RUN groupadd -g {uid} keystone \\
 && useradd -u {uid} -g keystone -d /var/lib/keystone -m -s /usr/sbin/nologin -p '*' keystone \\
 && install -d -m 0755 /etc/keystone \\
 && install -d -m 0700 -o keystone -g keystone /etc/keystone/fernet-keys /var/lib/keystone/.ssh \\
 && printf 'Match User keystone\\n    ForceCommand internal-sftp\\n' >> /etc/ssh/sshd_config
"""
CONTROLLER_DOCKERFILE = """\
FROM {base}
LABEL {label}=controller
COPY wheels /opt/keysyncd-wheels
RUN python3 -m venv /opt/keysyncd-test \\
 && /opt/keysyncd-test/bin/pip install --quiet --no-index --find-links /opt/keysyncd-wheels \\
      keysyncd \\
 && /opt/keysyncd-test/bin/keysyncd --help > /dev/null
"""


@dataclass(frozen=True)
class Images:
    """The tags of the images the container fleet runs."""

    host: str
    node: str
    controller: str


def _digest(*parts: str | bytes) -> str:
    """Return a short hex digest of ``parts`` (a recipe): 16 characters of SHA-256."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()[:16]


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """Return the Debian mirror apt on this machine uses for the main archive.

    Read from ``sources.list`` and ``sources.list.d`` (one-line and deb822 formats); raise
    RuntimeError if apt names no Debian archive (a URI ending in ``/debian``).
    """
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        with contextlib.suppress(OSError):
            text = path.read_text(encoding="utf-8", errors="replace")
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                found = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)", line) or re.match(
                    r"URIs:\s*(\S+)", line
                )
                if found and found[1].rstrip("/").endswith("/debian"):
                    return found[1].rstrip("/")
    raise RuntimeError(f"no Debian archive in the apt sources under {sources}")


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def _debootstrap_rootfs(client: docker.DockerClient, tag: str, log: Callable[[str], None]) -> None:
    """Import a new debootstrap root file system as ``tag``; raise RuntimeError on failure."""
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="keysyncd-rootfs-", dir="/var/tmp") as work:
        rootfs = Path(work) / "rootfs"
        command = ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}"]
        command += [SUITE, str(rootfs), mirror]
        log(f"debootstrap {SUITE} ({VARIANT}, {len(PACKAGES)} packages) from {mirror}")
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed: {(result.stdout + result.stderr)[-3000:]}")
        for path in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            path.unlink()
        repository, version = tag.split(":")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            client.api.import_image_from_stream(
                tar.stdout, repository=repository, tag=version, changes=['CMD ["/sbin/init"]']
            )
        finally:
            tar.wait(timeout=BUILD_TIMEOUT)
        if tar.returncode != 0 or not _exists(client, tag):
            raise RuntimeError(f"importing the root file system as {tag} failed")


def _build(
    client: docker.DockerClient, tag: str, dockerfile: str, files: dict[str, bytes | Path]
) -> None:
    """Build ``tag`` from ``dockerfile`` with ``files`` in its context; raise BuildError."""
    with tempfile.TemporaryDirectory(prefix="keysyncd-image-", dir="/var/tmp") as context:
        for name, content in files.items():
            target = Path(context) / name
            if isinstance(content, Path):
                shutil.copytree(content, target)
            else:
                target.write_bytes(content)
        (Path(context) / "Dockerfile").write_text(dockerfile)
        client.images.build(path=context, tag=tag, rm=True, forcerm=True, timeout=BUILD_TIMEOUT)


def build_wheels(directory: Path, project: Path = ROOT) -> Path:
    """Return ``directory`` after filling it with keysyncd's wheel and its dependencies'.

    Built with this Python's pip (``pip wheel``; PyPI is reachable from the host, never from
    a container). Raise RuntimeError if pip fails.
    """
    directory.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]
    command += ["--wheel-dir", str(directory), str(project)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pip wheel failed: {(result.stdout + result.stderr)[-3000:]}")
    return directory


def _wheels_digest(directory: Path) -> str:
    """Return a digest of the wheels' names and contents (the controller image's recipe)."""
    parts: list[str | bytes] = []
    for wheel in sorted(directory.glob("*.whl")):
        parts.append(wheel.name)
        with zipfile.ZipFile(wheel) as archive:  # entries, not the zip: its times vary
            for entry in sorted(archive.namelist()):
                parts += [entry, archive.read(entry)]
    return _digest(*parts)


def _prune(client: docker.DockerClient, kind: str, keep: str) -> None:
    """Remove the older images of ``kind`` (e.g. controllers of earlier wheels), not ``keep``."""
    for image in client.images.list(filters={"label": f"{IMAGE_LABEL}={kind}"}):
        if keep not in image.tags:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image.id, force=False, noprune=False)


def ensure_images(
    client: docker.DockerClient, log: Callable[[str], None] = lambda message: None
) -> Images:
    """Return the images' tags, building each one that is missing (bounded in time).

    Raise RuntimeError or docker.errors.BuildError if a build fails.
    """
    rootfs = f"keysyncd-test-rootfs:{_digest(SUITE, VARIANT, *PACKAGES)}"
    if not _exists(client, rootfs):
        _debootstrap_rootfs(client, rootfs, log)
    host_file = HOST_DOCKERFILE.format(base=rootfs, label=IMAGE_LABEL)
    host = f"keysyncd-test-host:{_digest(host_file, SSHD_CONFIG, SSH_UNIT_DROP_IN)}"
    if not _exists(client, host):
        log(f"building {host}")
        files: dict[str, bytes | Path] = {
            "sshd.conf": SSHD_CONFIG.encode(),
            "ssh-keys.conf": SSH_UNIT_DROP_IN.encode(),
        }
        _build(client, host, host_file, files)
    node_file = NODE_DOCKERFILE.format(base=host, label=IMAGE_LABEL, uid=KEYSTONE_ID)
    node = f"keysyncd-test-node:{_digest(node_file)}"
    if not _exists(client, node):
        log(f"building {node}")
        _build(client, node, node_file, {})
    with tempfile.TemporaryDirectory(prefix="keysyncd-wheels-", dir="/var/tmp") as work:
        wheels = build_wheels(Path(work) / "wheels")
        controller_file = CONTROLLER_DOCKERFILE.format(base=host, label=IMAGE_LABEL)
        controller = f"keysyncd-test-controller:{_digest(controller_file, _wheels_digest(wheels))}"
        if not _exists(client, controller):
            log(f"building {controller}")
            _build(client, controller, controller_file, {"wheels": wheels})
    for kind, keep in (("host", host), ("node", node), ("controller", controller)):
        _prune(client, kind, keep)
    return Images(host=host, node=node, controller=controller)


def main(argv: list[str] | None = None) -> int:
    """Build the images if missing and print their tags, sizes and the time taken; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    client = docker.from_env(timeout=BUILD_TIMEOUT)
    started = time.monotonic()
    images = ensure_images(client, lambda message: print(message, file=sys.stderr))
    for tag in (images.host, images.node, images.controller):
        size = client.images.get(tag).attrs["Size"]
        print(json.dumps({"tag": tag, "size_mib": round(size / 2**20)}))
    print(f"images ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("DOCKER_HOST", "unix:///var/lib/keysyncd-test-docker/docker.sock")
    sys.exit(main())
