"""SSH into a playground machine: connect (host key pinned), run, terminals, files, ports.

This is the only way the control plane gets into a machine, whatever the runtime driver.
Every failure leaves this module as `AccessFailure` (or its `CommandTimeout`), with a message
naming the machine and the asyncssh/OS exception chained as the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import asyncssh

from labyard.access._errors import describe, translate, translated
from labyard.access.commands import ExecResult, run_command
from labyard.access.files import MachineFiles, open_files
from labyard.access.keys import import_private_key, import_public_key
from labyard.access.pty import PtySession
from labyard.errors import AccessFailure

# While a machine boots, a refused connect returns at once, but a SYN into a network that
# is not wired up yet can vanish; retrying the TCP connect this often bounds how late we
# notice sshd without ever waiting out the kernel's multi-second SYN back-off.
_PROBE_TIMEOUT_S = 0.2
_RETRY_INTERVAL_S = 0.025
# Terminals should not drop silently: probe idle connections so a dead machine is noticed
# (after about interval * count_max seconds) instead of hanging a websocket forever.
_KEEPALIVE_INTERVAL_S = 15.0
_KEEPALIVE_COUNT_MAX = 3
# AES-GCM first: asyncssh hands each packet to OpenSSL in one call (AES-NI), while its
# chacha20-poly1305 (the usual default) makes several Python-level cipher calls per packet.
# Task checks exec in every machine about once a second, so this is ~25% of their CPU.
_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)


Dial = Callable[[float], Awaitable[socket.socket]]
"""(timeout) -> a connected socket to the machine's sshd: the runtime driver's `dial`."""


@dataclass(frozen=True)
class Target:
    """How to reach one machine: its name, the way to its sshd, the pinned host key and the
    playground's client key.

    `where` names the machine in messages (`MACHINE.PLAYGROUND`, as `ssh-config` does).
    `dial` is None for a target reached only over a socket handed to `connect_over`.
    `host_public_key` is an OpenSSH public key line; it is the only host key accepted.
    `client_private_key` is an unencrypted OpenSSH private key.
    """

    where: str
    dial: Dial | None
    host_public_key: str
    client_private_key: str
    user: str = "root"


class Forwarder:
    """A local listening port whose connections are tunnelled to a destination in a machine."""

    def __init__(self, listener: asyncssh.SSHListener) -> None:
        self._listener = listener

    @property
    def port(self) -> int:
        """The port actually bound (the chosen one when 0 was asked for)."""
        port: int = self._listener.get_port()
        return port

    def close(self) -> None:
        """Stop listening; tunnelled connections already open are closed too."""
        self._listener.close()

    async def wait_closed(self) -> None:
        """Wait until the listener is fully closed."""
        await self._listener.wait_closed()


class Connection:
    """An open, authenticated SSH connection to one machine. Close it, or use `async with`."""

    def __init__(self, conn: asyncssh.SSHClientConnection, target: Target) -> None:
        self._conn = conn
        self._target = target

    @property
    def target(self) -> Target:
        """The machine this connection reaches."""
        return self._target

    async def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        """Run `command` through the remote user's shell and collect its result.

        `input` is fed to stdin (stdin is empty otherwise). `env` is exported by the shell
        before the command, so it works whatever sshd's `AcceptEnv` says. When `timeout`
        seconds pass first, the command's process group is killed and `CommandTimeout`
        raised. A non-zero exit code is a result, not an error.
        """
        data = input.encode("utf-8") if isinstance(input, str) else input
        with translated(self._target.where, "run a command"):
            return await run_command(
                self._conn, self._target.where, command, timeout=timeout, input=data, env=env
            )

    async def open_pty(
        self,
        command: str | None = None,
        *,
        cols: int = 80,
        rows: int = 24,
        term: str = "xterm-256color",
        env: Mapping[str, str] | None = None,
    ) -> PtySession:
        """Start a login shell (or `command`) on a pseudo-terminal of the given size.

        `env` (default `LANG=C.UTF-8`) is sent as SSH environment requests, which sshd
        honours only for names its `AcceptEnv` lists (Debian's default: `LANG LC_*`).
        """
        environment = {"LANG": "C.UTF-8", **(env or {})}
        with translated(self._target.where, "open a terminal"):
            process = await self._conn.create_process(
                command,
                term_type=term,
                term_size=(cols, rows),
                # IUTF8 lets the kernel's line editor erase a whole multi-byte character.
                term_modes={asyncssh.PTY_IUTF8: 1},
                env=environment,
                encoding=None,
            )
        return PtySession(process, self._target.where)

    async def upload(self, local: Path, remote: str) -> None:
        """Copy a local file or directory tree to the machine, keeping modes and times.

        Like `cp -r`: when `remote` is an existing directory, `local` lands inside it.
        """
        with translated(self._target.where, f"upload {local} to {remote}"):
            async with self._conn.start_sftp_client() as sftp:
                await sftp.put(str(local), remote, recurse=True, preserve=True)

    async def download(self, remote: str, local: Path) -> None:
        """Copy a file or directory tree from the machine, keeping modes and times.

        Like `cp -r`: when `local` is an existing directory, `remote` lands inside it.
        """
        with translated(self._target.where, f"download {remote} to {local}"):
            async with self._conn.start_sftp_client() as sftp:
                await sftp.get(remote, str(local), recurse=True, preserve=True)

    def files(self, user: str | None = None) -> AbstractAsyncContextManager[MachineFiles]:
        """An SFTP session in the machine as `user` (the login user by default), with that
        user's file permissions (see access/files.py); `async with` it."""
        return open_files(
            self._conn, self._target.where, self._target.user, user or self._target.user
        )

    async def forward_local_port(
        self, listen_host: str, listen_port: int, dest_host: str, dest_port: int
    ) -> Forwarder:
        """Listen on `listen_host:listen_port` here and tunnel each connection to
        `dest_host:dest_port` as seen from the machine. Port 0 picks a free port."""
        action = f"forward port {listen_port} to {dest_host}:{dest_port}"
        with translated(self._target.where, action):
            listener = await self._conn.forward_local_port(
                listen_host, listen_port, dest_host, dest_port
            )
        return Forwarder(listener)

    async def open_port(self, port: int, host: str = "localhost") -> PortStream:
        """A byte stream to `host:port` as seen from inside the machine (SSH `direct-tcpip`):
        how the control plane reaches any port of a machine but its sshd."""
        with translated(self._target.where, f"reach port {port}"):
            reader, writer = await self._conn.open_connection(host, port, encoding=None)
        return PortStream(reader, writer, f"port {port} of {self._target.where}")

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (closed here, by the machine, or lost)."""
        return self._conn.is_closed()

    def close(self) -> None:
        """Close the connection and every session, terminal and forward riding on it."""
        self._conn.close()

    async def wait_closed(self) -> None:
        """Wait until the connection is fully closed."""
        await self._conn.wait_closed()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


class PortStream:
    """Bytes to and from one port in a machine, riding on its SSH connection."""

    def __init__(
        self,
        reader: asyncssh.SSHReader[bytes],
        writer: asyncssh.SSHWriter[bytes],
        where: str,
    ) -> None:
        self._reader, self._writer, self.where = reader, writer, where

    async def read(self, limit: int = 65536) -> bytes:
        """Up to `limit` bytes; b"" once the other side has finished sending."""
        with translated(self.where, "read"):
            return await self._reader.read(limit)

    async def write(self, data: bytes) -> None:
        with translated(self.where, "write"):
            self._writer.write(data)
            await self._writer.drain()

    def write_eof(self) -> None:
        """Say that nothing more will be sent (the other side can still answer)."""
        with contextlib.suppress(OSError, asyncssh.Error):
            self._writer.write_eof()

    async def close(self) -> None:
        self._writer.close()


async def connect(target: Target, timeout: float = 10.0) -> Connection:
    """Open an authenticated connection, accepting only the pinned host key.

    `timeout` covers the TCP connect, key exchange and authentication together. Keys in
    `target` that do not parse raise `InvalidInput` (here and in `wait_until_ready`).
    """
    keys = _Keys.of(target)
    with translated(target.where, "connect"):
        async with asyncio.timeout(timeout):
            sock = await _open_socket(target, timeout)
            return await _handshake(target, keys, sock)


async def connect_over(target: Target, sock: socket.socket, timeout: float = 10.0) -> Connection:
    """Like `connect`, but over `sock`, already connected to the machine's sshd (e.g. one
    end of a socketpair bridged to the server's WebSocket tunnel). `sock` belongs to the
    connection from now on, and is closed if the handshake fails."""
    try:
        keys = _Keys.of(target)
    except BaseException:
        sock.close()
        raise
    with translated(target.where, "connect"):
        async with asyncio.timeout(timeout):
            return await _handshake(target, keys, sock)


async def wait_until_ready(target: Target, deadline_s: float) -> Connection:
    """Connect to a machine that may still be booting, retrying until `deadline_s` seconds
    from now; raises `AccessFailure` naming the last failure if it never answers.

    Refused or unanswered connects are retried every ~25 ms, so a freshly started sshd is
    found within tens of milliseconds. The probing socket is the one SSH then runs over:
    sshd never sees a connection dropped before authentication (OpenSSH's per-source
    penalties count those). A host key mismatch fails at once; retrying cannot fix it.
    """
    keys = _Keys.of(target)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    last: BaseException | None = None
    while (remaining := deadline - loop.time()) > 0:
        try:
            async with asyncio.timeout(remaining):
                sock = await _open_socket(target, min(_PROBE_TIMEOUT_S, remaining))
                return await _handshake(target, keys, sock)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise translate(exc, target.where, "connect") from exc
        except (asyncssh.Error, OSError) as exc:
            last = exc
        await asyncio.sleep(max(0.0, min(_RETRY_INTERVAL_S, deadline - loop.time())))
    raise _not_ready(target, deadline_s, last)


def _not_ready(target: Target, deadline_s: float, last: BaseException | None) -> AccessFailure:
    message = f"{target.where} did not accept SSH within {deadline_s:g} s"
    if last is None:
        return AccessFailure(message, reason="not_ready")
    cause = translate(last, target.where, "connect")
    return AccessFailure(
        f"{message} (last attempt: {cause.message})", detail=describe(last), reason="not_ready"
    )


@dataclass(frozen=True)
class _Keys:
    """A target's keys parsed once, so a retry loop does not re-parse them every 25 ms."""

    host: asyncssh.SSHKey
    client: asyncssh.SSHKey

    @classmethod
    def of(cls, target: Target) -> _Keys:
        return cls(
            import_public_key(target.host_public_key), import_private_key(target.client_private_key)
        )


async def _open_socket(target: Target, timeout: float) -> socket.socket:
    """A connected socket to the machine's sshd through the driver, or OSError/TimeoutError."""
    if target.dial is None:
        raise AccessFailure(f"{target.where} can only be reached over a given socket")
    async with asyncio.timeout(timeout):
        return await target.dial(timeout)


async def _handshake(target: Target, keys: _Keys, sock: socket.socket) -> Connection:
    """Run SSH over a connected socket; the socket belongs to asyncssh (or is closed)."""
    try:
        conn = await asyncssh.connect(
            target.where,  # no address: `sock` is connected, and the host key is pinned
            sock=sock,
            username=target.user,
            # Trust exactly this key for this connection: (host keys, CA keys, revoked).
            known_hosts=([keys.host], [], []),
            client_keys=[keys.client],
            preferred_auth="publickey",
            # Nothing from the control plane host's own SSH setup may leak in.
            agent_path=None,
            config=None,
            keepalive_interval=_KEEPALIVE_INTERVAL_S,
            keepalive_count_max=_KEEPALIVE_COUNT_MAX,
            encryption_algs=_CIPHERS,
        )
    except BaseException:
        sock.close()
        raise
    return Connection(conn, target)
