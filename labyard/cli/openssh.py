"""Plain OpenSSH into playground machines: `labyard ssh-config ID` writes the keys and
prints a `~/.ssh/config` entry whose `ProxyCommand labyard ssh-proxy %h` carries SSH
through the server's tunnel (or straight to the machine on the local instance).

Host names: `<machine>.<playground-id>`, or just `<playground-id>` for the first machine.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from labyard.cli import credentials
from labyard.cli._common import out
from labyard.cli._views import SshKeys
from labyard.cli.backend import Backend, run_on
from labyard.errors import InvalidInput

_HOST = re.compile(r"(?:(?P<machine>[a-z][a-z0-9-]*)\.)?(?P<id>[a-z0-9]{8})")


def parse_host(host: str) -> tuple[str | None, str]:
    """(machine or None, playground id) from `<machine>.<id>` or `<id>`."""
    match = _HOST.fullmatch(host.lower())
    if match is None:
        raise InvalidInput(f"{host!r}: write <machine>.<playground-id> or <playground-id>")
    return match["machine"], match["id"]


def ssh_proxy(host: str) -> None:
    """Pipe stdin/stdout to a machine's sshd (for OpenSSH's ProxyCommand)."""
    from labyard.cli._pipes import relay_stdio

    machine, playground_id = parse_host(host)

    async def work(backend: Backend) -> None:
        await relay_stdio(await backend.open_stream(playground_id, machine))

    run_on(work)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(text if text.endswith("\n") else text + "\n")


def known_hosts(playground_id: str, keys: SshKeys) -> str:
    lines = []
    for position, (name, key) in enumerate(keys.host_keys.items()):
        names = f"{name}.{playground_id}" + (f",{playground_id}" if position == 0 else "")
        lines.append(f"{names} {key.strip()}")
    return "\n".join(lines) + "\n"


def _labyard() -> str:
    """How OpenSSH should run this very command."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "labyard" and argv0.is_file():
        return str(argv0.absolute())
    return shutil.which("labyard") or "labyard"


def ssh_config(playground_id: str) -> None:
    """Write the playground's keys and print a ~/.ssh/config entry for plain `ssh`."""

    async def work(backend: Backend) -> tuple[SshKeys, str | None]:
        return await backend.ssh_keys(playground_id), backend.server

    keys, server = run_on(work)
    key_file = credentials.keys_dir() / playground_id
    hosts_file = key_file.with_name(f"{playground_id}.known_hosts")
    _write(key_file, keys.client_key)
    _write(hosts_file, known_hosts(playground_id, keys))
    command = [_labyard(), *(["--server", server] if server else []), "ssh-proxy"]
    out.print(
        f"Host {playground_id} *.{playground_id}\n"
        f"    User {keys.user}\n"
        f'    IdentityFile "{key_file}"\n'
        "    IdentitiesOnly yes\n"
        f'    UserKnownHostsFile "{hosts_file}"\n'
        "    StrictHostKeyChecking yes\n"
        f"    ProxyCommand {shlex.join(command)} %h",
        markup=False,
        soft_wrap=True,
    )
