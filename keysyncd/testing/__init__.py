"""Test helpers for keysyncd: a fleet of real local OpenSSH servers (see ``fleet``)."""
