"""Every paramiko member keysyncd uses that paramiko does not document, in one place:
tests/unit/test_paramiko_contract.py checks each against the installed paramiko (and that no
other is used), so a paramiko that changes one fails that test."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    """One paramiko member keysyncd relies on beyond paramiko's documented API."""

    owner: str  # the class: "paramiko.sftp_client.SFTPClient"
    name: str  # "_request"
    used_in: str  # the module of keysyncd/io/remote that uses it
    # a method: how many positional arguments keysyncd passes (each count it uses);
    # an attribute (set by the owner's __init__): None
    arguments: tuple[int, ...] | None = None
    what: str = ""  # an attribute: what keysyncd does with it

    @property
    def label(self) -> str:
        """Return ``Owner.name`` as a message names it."""
        return f"{self.owner.rsplit('.', 1)[1]}.{self.name}"


SFTP_CLIENT = "paramiko.sftp_client.SFTPClient"
MEMBERS: tuple[Member, ...] = (
    # (kind, *args): a request with its arguments, the reply read back
    Member(SFTP_CLIENT, "_request", "sftpwire.py", arguments=(2, 3, 4)),
    Member(SFTP_CLIENT, "_read_packet", "sftpwire.py", arguments=(0,)),
    Member(SFTP_CLIENT, "_convert_status", "sftpwire.py", arguments=(1,)),
    Member(SFTP_CLIENT, "_lock", "sftpwire.py", what="held while request ids are taken"),
    Member(SFTP_CLIENT, "_expecting", "sftpwire.py", what="request id -> waiter, set and popped"),
    Member(SFTP_CLIENT, "request_number", "sftpwire.py", what="the next request id, an int"),
    Member(SFTP_CLIENT, "sock", "sftpwire.py", what="the channel a batch is written to"),
    Member("paramiko.sftp_attr.SFTPAttributes", "_pack", "sftpwire.py", arguments=(1,)),
    Member("paramiko.message.Message", "packet", "sftpwire.py", what="a BytesIO, tell and seek"),
    Member("paramiko.sftp_file.SFTPFile", "handle", "sftpread.py", what="the SFTP handle, bytes"),
    Member("paramiko.transport.Transport", "sock", "ssh.py", what="the socket, shut down"),
    Member("paramiko.transport.Transport", "banner_timeout", "ssh.py", what="seconds, set"),
    Member("paramiko.transport.Transport", "auth_timeout", "ssh.py", what="seconds, set"),
)
# Attributes paramiko's objects set on themselves that its documentation describes: used
# freely, checked by the test like everything else but not part of the contract.
DOCUMENTED: frozenset[str] = frozenset({"st_mode", "st_uid", "st_gid"})
