"""labyard.access against a real OpenSSH sshd on 127.0.0.1 (Debian package openssh-server)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from labyard.access import (
    Connection,
    Dial,
    KeyPair,
    PtySession,
    Target,
    connect,
    generate_keypair,
    public_key_of,
    wait_until_ready,
)
from labyard.errors import AccessFailure, CommandTimeout, InvalidInput

SSHD = "/usr/sbin/sshd"
WAIT_S = 10.0  # upper bound for any event a test waits on; tests normally take milliseconds


@dataclass
class Sshd:
    """A running `sshd -D -e`; its log lines are collected so failures can show them."""

    port: int
    process: asyncio.subprocess.Process
    log: list[str] = field(default_factory=list)
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    listening_at: float = 0.0
    drain: asyncio.Task[None] | None = None

    async def wait_listening(self) -> None:
        async with asyncio.timeout(WAIT_S):
            await self.listening.wait()
        if not self.listening_at:
            pytest.fail("sshd exited before listening:\n" + "\n".join(self.log))

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        if self.drain is not None:
            await self.drain


@dataclass(frozen=True)
class Keys:
    host: KeyPair
    client: KeyPair


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_sshd(workdir: Path, port: int, keys: Keys) -> Sshd:
    workdir.mkdir(parents=True, exist_ok=True)
    host_key = workdir / "host_ed25519"
    host_key.write_text(keys.host.private_openssh)
    host_key.chmod(0o600)  # sshd ignores host keys others can read
    authorized = workdir / "authorized_keys"
    authorized.write_text(keys.client.public_openssh + "\n")
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\nPermitRootLogin yes\nStrictModes no\n"
        "PidFile none\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\n"
        "AcceptEnv LANG LC_*\n"
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    process = await asyncio.create_subprocess_exec(
        SSHD, "-D", "-e", "-f", str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    sshd = Sshd(port, process)
    sshd.drain = asyncio.create_task(_drain(sshd))
    return sshd


async def _drain(sshd: Sshd) -> None:
    """Keep reading sshd's log (a full pipe would stall it); note when it listens."""
    assert sshd.process.stderr is not None
    loop = asyncio.get_running_loop()
    async for raw in sshd.process.stderr:
        line = raw.decode(errors="replace").rstrip()
        sshd.log.append(line)
        if line.startswith("Server listening") and not sshd.listening_at:
            sshd.listening_at = loop.time()
            sshd.listening.set()
    sshd.listening.set()  # exited: wake any waiter, which then reports the log


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(host=generate_keypair(), client=generate_keypair())


@pytest.fixture(scope="module")
async def sshd(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sshd]:
    server = await start_sshd(tmp_path_factory.mktemp("sshd"), free_port(), keys)
    try:
        await server.wait_listening()
        yield server
    finally:
        await server.stop()


def dial_to(port: int) -> Dial:
    """A driver's `dial`, reduced to its essence: a TCP connect to a local port."""

    async def dial(timeout: float) -> socket.socket:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return sock

    return dial


def target_for(port: int, keys: Keys) -> Target:
    return Target(
        f"machine.{port}", dial_to(port), keys.host.public_openssh, keys.client.private_openssh
    )


@pytest.fixture
def target(sshd: Sshd, keys: Keys) -> Target:
    return target_for(sshd.port, keys)


@pytest.fixture
async def conn(target: Target) -> AsyncIterator[Connection]:
    async with await connect(target) as connection:
        yield connection


async def read_until(pty: PtySession, needle: bytes) -> bytes:
    seen = b""
    async with asyncio.timeout(WAIT_S):
        while needle not in seen:
            chunk = await pty.read()
            if not chunk:
                pytest.fail(f"terminal ended before {needle!r}; got {seen!r}")
            seen += chunk
    return seen


# --- keys -----------------------------------------------------------------------------


def test_public_key_of_matches_generated_pair() -> None:
    pair = generate_keypair()
    assert pair.public_openssh.startswith("ssh-ed25519 ")
    assert public_key_of(pair.private_openssh) == pair.public_openssh
    with pytest.raises(InvalidInput):
        public_key_of("not a key")


# --- run ------------------------------------------------------------------------------


async def test_run_returns_exit_code_stdout_and_stderr(conn: Connection) -> None:
    result = await conn.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")


async def test_run_feeds_input_and_env(conn: Connection) -> None:
    assert (await conn.run("cat", input="abc")).stdout == "abc"
    assert (await conn.run("cat", timeout=WAIT_S)).stdout == ""  # stdin is empty, not open
    result = await conn.run('echo "$GREETING"', env={"GREETING": "it's $HOME"})
    assert result.stdout == "it's $HOME\n"
    with pytest.raises(InvalidInput):
        await conn.run("true", env={"A=B": "x"})


async def test_run_timeout_raises_and_kills_the_remote_commands(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    # A compound command keeps the shell as the parent of `sleep`: both must die.
    with pytest.raises(CommandTimeout) as info:
        await conn.run("sleep 317; true", timeout=0.3)
    assert loop.time() - started < 2.0
    assert "machine." in str(info.value)
    assert info.value.__cause__ is not None
    async with asyncio.timeout(WAIT_S):
        while "sleep 317" in (await conn.run("ps -eo args")).stdout.splitlines():
            await asyncio.sleep(0.02)


async def test_utf8_round_trips_through_run(conn: Connection) -> None:
    text = "héllo ✓ 日本語 🚀\n"
    assert (await conn.run("cat", input=text)).stdout == text
    assert (await conn.run("printf '%s' \"$T\"", env={"T": text})).stdout == text
    assert (await conn.run("printf 'a\\377b'")).stdout == "a\ufffdb"


# --- host key pinning and connection failures ------------------------------------------


async def test_wrong_host_key_is_refused(sshd: Sshd, keys: Keys) -> None:
    impostor = Target(f"machine.{sshd.port}", dial_to(sshd.port),
                      generate_keypair().public_openssh, keys.client.private_openssh)  # fmt: skip
    with pytest.raises(AccessFailure) as info:
        await connect(impostor)
    assert info.value.reason == "host_key_mismatch"
    assert f"machine.{sshd.port}" in str(info.value)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AccessFailure, match="host key"):
        await wait_until_ready(impostor, deadline_s=WAIT_S)  # not retried: it cannot heal
    assert loop.time() - started < 2.0


async def test_wrong_client_key_is_refused(sshd: Sshd, keys: Keys) -> None:
    stranger = Target(f"machine.{sshd.port}", dial_to(sshd.port), keys.host.public_openssh,
                      generate_keypair().private_openssh)  # fmt: skip
    with pytest.raises(AccessFailure) as info:
        await connect(stranger)
    assert info.value.reason == "auth_failed"


async def test_closed_port_fails_fast(keys: Keys) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AccessFailure) as info:
        await connect(target_for(free_port(), keys), timeout=WAIT_S)
    assert loop.time() - started < 1.0
    assert info.value.reason == "connection_refused"
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


# --- wait_until_ready ----------------------------------------------------------------


async def test_wait_until_ready_returns_once_sshd_listens(keys: Keys, tmp_path: Path) -> None:
    port = free_port()
    waiting = asyncio.create_task(wait_until_ready(target_for(port, keys), deadline_s=WAIT_S))
    done, _ = await asyncio.wait({waiting}, timeout=0.3)
    assert not done, "returned before any sshd existed"
    server = await start_sshd(tmp_path, port, keys)
    try:
        await server.wait_listening()
        async with await waiting as connection:
            ready_at = asyncio.get_running_loop().time()
            assert (await connection.run("echo up")).stdout == "up\n"
        # Includes the SSH handshake; the retry interval itself is ~25 ms.
        assert ready_at - server.listening_at < 0.5
    finally:
        waiting.cancel()
        await server.stop()


async def test_wait_until_ready_gives_up_at_the_deadline(keys: Keys) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AccessFailure) as info:
        await wait_until_ready(target_for(free_port(), keys), deadline_s=0.4)
    elapsed = loop.time() - started
    assert 0.4 <= elapsed < 1.5
    assert info.value.reason == "not_ready"
    assert "machine." in str(info.value)


# --- terminals -----------------------------------------------------------------------


async def test_pty_runs_shell_and_resizes(conn: Connection) -> None:
    async with await conn.open_pty(cols=80, rows=24) as pty:
        pty.write(b"echo $((6*7))\n")
        await read_until(pty, b"42\r\n")
        pty.write(b"stty size\n")
        await read_until(pty, b"24 80\r\n")
        pty.resize(100, 30)
        pty.write(b"stty size\n")
        await read_until(pty, b"30 100\r\n")
        pty.write(b"exit 5\n")
        async with asyncio.timeout(WAIT_S):
            while await pty.read():
                pass
        await pty.wait_closed()
        assert pty.exit_code == 5


async def test_pty_is_utf8_and_binary_safe(conn: Connection) -> None:
    async with await conn.open_pty("bash --norc -i") as pty:
        # Split with %s so the echoed command line itself cannot match the needle.
        pty.write("printf '%s%s\\n' 'ünï' 'cødé ✓'\n".encode())
        await read_until(pty, "ünïcødé ✓\r\n".encode())
        pty.write(b"printf '<\\377\\000>'\n")
        await read_until(pty, b"<\xff\x00>")


# --- files ---------------------------------------------------------------------------


async def test_upload_file_and_directory_keeps_modes(conn: Connection, tmp_path: Path) -> None:
    local = tmp_path / "local"
    (local / "tree" / "sub").mkdir(parents=True)
    (local / "tree" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (local / "tree" / "run.sh").chmod(0o751)
    (local / "tree" / "sub" / "secret").write_text("s3cret ✓")
    (local / "tree" / "sub" / "secret").chmod(0o600)
    (local / "tree" / "sub").chmod(0o710)
    remote = tmp_path / "remote"
    await conn.run(f"mkdir {remote}")

    await conn.upload(local / "tree" / "run.sh", f"{remote}/single.sh")
    await conn.upload(local / "tree", f"{remote}/tree")

    listing = await conn.run(f"cd {remote} && find . -mindepth 1 -printf '%P %m\\n' | sort")
    assert listing.stdout.splitlines() == [
        "single.sh 751", "tree 755", "tree/run.sh 751", "tree/sub 710", "tree/sub/secret 600",
    ]  # fmt: skip
    assert (await conn.run(f"{remote}/tree/run.sh")).stdout == "hi\n"
    assert (await conn.run(f"cat {remote}/tree/sub/secret")).stdout == "s3cret ✓"


async def test_download_file_and_directory_keeps_modes(conn: Connection, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    script = (
        f"mkdir -p {remote}/tree/sub && cd {remote}/tree && printf 'x\\n' > run.sh && "
        "chmod 750 run.sh && printf 'ünï' > sub/data && chmod 604 sub/data && chmod 711 sub"
    )
    assert (await conn.run(script)).exit_code == 0
    local = tmp_path / "local"
    local.mkdir()

    await conn.download(f"{remote}/tree/run.sh", local / "one.sh")
    await conn.download(f"{remote}/tree", local / "tree")

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert (mode(local / "one.sh"), (local / "one.sh").read_text()) == (0o750, "x\n")
    assert mode(local / "tree" / "run.sh") == 0o750
    assert mode(local / "tree" / "sub") == 0o711
    assert mode(local / "tree" / "sub" / "data") == 0o604
    assert (local / "tree" / "sub" / "data").read_text() == "ünï"


async def test_file_copy_errors_are_access_failures(conn: Connection, tmp_path: Path) -> None:
    with pytest.raises(AccessFailure) as info:
        await conn.download("/nonexistent/labyard", tmp_path / "x")
    assert info.value.reason == "file_copy_failed"
    with pytest.raises(AccessFailure):
        await conn.upload(tmp_path / "missing", "/tmp/labyard-missing")


# --- port forwarding -----------------------------------------------------------------


async def test_forward_local_port_reaches_a_server_in_the_machine(conn: Connection) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo: " + await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    server_port = server.sockets[0].getsockname()[1]
    forwarder = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", server_port)
    try:
        assert forwarder.port not in (0, server_port)
        async with asyncio.timeout(WAIT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", forwarder.port)
            writer.write(b"ping\n")
            assert await reader.readline() == b"echo: ping\n"
            writer.close()
    finally:
        forwarder.close()
        await forwarder.wait_closed()
        server.close()
        await server.wait_closed()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", forwarder.port)
