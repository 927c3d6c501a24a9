"""SSH key pairs for playgrounds: one client key per playground, one host key per machine."""

from __future__ import annotations

from dataclasses import dataclass

import asyncssh

from labyard.errors import InvalidInput


@dataclass(frozen=True)
class KeyPair:
    """An ed25519 key pair in OpenSSH text formats.

    `private_openssh` is the unencrypted "-----BEGIN OPENSSH PRIVATE KEY-----" block;
    `public_openssh` is one `authorized_keys` / `known_hosts` style line without newline.
    """

    private_openssh: str
    public_openssh: str


def generate_keypair(comment: str = "labyard") -> KeyPair:
    """A fresh ed25519 key pair; `comment` ends the public line (shows up in sshd logs)."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    return KeyPair(
        private_openssh=key.export_private_key("openssh").decode("ascii"),
        public_openssh=_public_line(key),
    )


def public_key_of(private_openssh: str) -> str:
    """The OpenSSH public key line of an OpenSSH private key.

    Raises `InvalidInput` when the text is not an unencrypted private key.
    """
    return _public_line(import_private_key(private_openssh))


def import_private_key(private_openssh: str) -> asyncssh.SSHKey:
    """Parse an unencrypted private key, raising `InvalidInput` rather than asyncssh errors."""
    try:
        return asyncssh.import_private_key(private_openssh)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise InvalidInput("not a usable SSH private key", detail=str(exc)) from exc


def import_public_key(public_openssh: str) -> asyncssh.SSHKey:
    """Parse an OpenSSH public key line, raising `InvalidInput` rather than asyncssh errors."""
    try:
        return asyncssh.import_public_key(public_openssh)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise InvalidInput("not a usable SSH public key", detail=str(exc)) from exc


def _public_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode("ascii").strip()
