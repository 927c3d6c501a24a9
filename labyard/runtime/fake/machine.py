"""One fake machine: a process that answers SSH (asyncssh) for its playground.

The fake driver runs `python -m labyard.runtime.fake.machine DIR` under `unshare` (a user,
mount, PID and UTS namespace of its own), detached. DIR holds `machine.json` (name, host
key, how to behave); the process writes `control/port` once it listens, and
`control/failed` (a sentence) before it exits when told to fail.

Before serving, it makes its own view of the files: the host's /usr, /etc and /opt and the
Python it runs on, read-only; its own /root, /home, /tmp and /var (under DIR/fs, kept across
a stop); its own /proc and /dev/pts. So "root" in it (root of its user namespace, the
invoking user outside) writes only its own files, `/root/.ssh/authorized_keys` is its own
(read at each login, as sshd does), and everything it ran ends with it (PID 1 of its PID
namespace). Commands run through bash in a session of their own, as in a real machine.
It is still no sandbox for strangers: it shares the host's network and kernel freely.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import signal
import socket
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import asyncssh

PRIVATE = ("root", "home", "tmp", "var")
"""The machine's own directories, under DIR/fs; the rest of its view is the host's, read-only."""
AUTHORIZED_KEYS = Path("/root/.ssh/authorized_keys")
CONTROL = Path("/run/machine")
"""DIR/control as the machine sees it: where it says its port (or why it failed)."""


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        """`direct-tcpip`, as sshd allows it: ports in the machine (the web port proxy,
        `port-forward`). This machine shares the host's network, so that is the host's."""
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        try:  # read at each login, like sshd: a claim replaces it (services/claim_reset.py)
            authorized = asyncssh.import_authorized_keys(AUTHORIZED_KEYS.read_text())
        except (OSError, ValueError):
            return False
        options = authorized.validate(key, "127.0.0.1", "127.0.0.1")
        return username == "root" and options is not None


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def enter_own_view(directory: Path, name: str) -> None:
    """Pivot into a root of the host's read-only system and the machine's own directories
    (see the module docstring); the host's mounts are let go of, none held."""
    new = directory / "view"
    new.mkdir(exist_ok=True)
    _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(new))
    for system in ("/usr", "/etc", "/opt"):
        _bind_read_only(Path(system), new)
    for link in ("bin", "sbin", "lib", "lib32", "lib64"):
        if Path("/" + link).is_symlink():
            (new / link).symlink_to(os.readlink("/" + link))
    for own in PRIVATE:
        (directory / "fs" / own).mkdir(parents=True, exist_ok=True)
        (new / own).mkdir()
        _mount("--bind", str(directory / "fs" / own), str(new / own))
    (new / "tmp").chmod(0o1777)
    (new / CONTROL.relative_to("/")).mkdir(parents=True)
    _mount("--bind", str(directory / "control"), str(new / CONTROL.relative_to("/")))
    for path in {Path(sys.prefix), Path(sys.base_prefix), Path(__file__).parents[3]}:
        _bind_read_only(path.resolve(), new)  # this process's own Python and labyard
    _devices(new)
    (new / "proc").mkdir()
    (new / ".old").mkdir()
    os.chdir(new)
    subprocess.run(["pivot_root", ".", ".old"], check=True, capture_output=True)
    os.chdir("/")
    _mount("-t", "proc", "proc", "/proc")
    subprocess.run(["umount", "-l", "/.old"], check=True, capture_output=True)
    os.rmdir("/.old")
    socket.sethostname(name)


def _bind_read_only(path: Path, new: Path) -> None:
    if not path.exists() or path == Path("/"):
        return
    target = new / path.relative_to("/")
    target.mkdir(parents=True, exist_ok=True)
    _mount("--rbind", str(path), str(target))
    _mount("-o", "remount,bind,ro", str(target))


def _devices(new: Path) -> None:
    (new / "dev").mkdir()
    for device in ("null", "zero", "random", "urandom", "tty", "full"):
        (new / "dev" / device).touch()
        _mount("--bind", f"/dev/{device}", str(new / "dev" / device))
    (new / "dev" / "pts").mkdir()
    _mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts", str(new / "dev/pts"))
    (new / "dev" / "ptmx").symlink_to("pts/ptmx")
    (new / "dev" / "shm").mkdir()


def _environment(extra: dict[str, str]) -> dict[str, str]:
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {"HOME": "/root", "PATH": path, "USER": "root", "LOGNAME": "root", **extra}


async def _run(process: asyncssh.SSHServerProcess[bytes]) -> None:
    command = process.command
    home = Path("/root")
    env = _environment({k: v for k, v in process.env.items() if k.startswith("LANG")})
    if process.term_type:
        code = await _run_on_terminal(process, command, home, env)
    else:
        child = await asyncio.create_subprocess_exec(
            "bash",
            "-c" if command else "-s",
            *([command] if command else []),
            cwd=home,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        feeding = asyncio.create_task(_feed(process, child))
        assert child.stdout is not None and child.stderr is not None
        await asyncio.gather(
            _pump(child.stdout, process.stdout.write), _pump(child.stderr, process.stderr.write)
        )
        code = await child.wait()
        feeding.cancel()
    process.exit(code if code >= 0 else 128 - code)


async def _pump(source: asyncio.StreamReader, write: Any) -> None:
    """Every byte to the client before the exit status (which closes the channel)."""
    while data := await source.read(65536):
        write(data)


async def _feed(process: asyncssh.SSHServerProcess[bytes], child: Any) -> None:
    try:
        while data := await process.stdin.read(65536):
            child.stdin.write(data)
            await child.stdin.drain()
    except (OSError, asyncssh.Error):
        pass
    finally:
        child.stdin.close()


async def _run_on_terminal(
    process: asyncssh.SSHServerProcess[bytes], command: str | None, home: Path, env: dict[str, str]
) -> int:
    parent, child_end = pty.openpty()
    cols, rows, _, _ = process.term_size
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", rows or 24, cols or 80, 0, 0))
    env = {**env, "TERM": process.term_type or "xterm"}
    argv = ["bash", "-c", command] if command else ["bash", "-l"]
    child = await asyncio.create_subprocess_exec(
        *argv,
        cwd=home,
        env=env,
        stdin=child_end,
        stdout=child_end,
        stderr=child_end,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(child_end)
    reader = os.fdopen(parent, "rb", buffering=0)
    writer = os.fdopen(os.dup(parent), "wb", buffering=0)
    await process.redirect(stdin=writer, stdout=reader, stderr=None, send_eof=False)
    code = await child.wait()
    await asyncio.sleep(0.05)  # let the last output through
    return code


async def serve(config: dict[str, Any]) -> None:
    behaviour: dict[str, Any] = config.get("behaviour", {})
    await asyncio.sleep(float(behaviour.get("boot_delay_s", 0)))
    if behaviour.get("fail"):
        (CONTROL / "failed").write_text(str(behaviour["fail"]))
        sys.exit(1)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if behaviour.get("never_ready"):
        await stop.wait()
        return
    server = await asyncssh.create_server(
        _Server,
        "127.0.0.1",
        0,
        server_host_keys=[asyncssh.import_private_key(config["host_key"])],
        process_factory=_run,
        encoding=None,
        sftp_factory=True,
        allow_scp=True,
        reuse_address=True,
    )
    port = server.sockets[0].getsockname()[1]
    (CONTROL / "port.new").write_text(str(port))
    (CONTROL / "port.new").rename(CONTROL / "port")
    await stop.wait()


def main(directory: Path) -> None:
    config: dict[str, Any] = json.loads((directory / "machine.json").read_text())
    enter_own_view(directory, str(config["name"]))
    asyncio.run(serve(config))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
