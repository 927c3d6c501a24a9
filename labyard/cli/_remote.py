"""The remote backend: a labyard server's JSON API, and SSH through its WebSocket tunnel.

SSH runs here, end to end: the server pipes bytes to the machine's sshd and never sees the
session. The playground's client key and the pinned host keys come from `/ssh-config`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path
from typing import Any

from labyard.access import Connection, Target, connect_over
from labyard.cli._client import ApiClient
from labyard.cli._pipes import Stream, bridge_socket, open_tunnel
from labyard.cli.backend import SshKeys
from labyard.cli.credentials import Login
from labyard.errors import NotFound
from labyard.services import MachineView, Playground

# Starting waits for every machine to answer; the server gives up after its own timeout.
_START_TIMEOUT_S = 300.0


def playground_from(data: dict[str, Any]) -> Playground:
    """The server's JSON for a playground, as the same object the local instance gives."""
    return Playground(
        id=data["id"],
        name=data["name"],
        title=data["title"],
        owner=data["owner"],
        state=data["state"],
        machines=[MachineView(**m) for m in data["machines"]],
        created_at=datetime.fromisoformat(data["created_at"]),
        expires_at=datetime.fromisoformat(data["expires_at"]),
    )


class RemoteBackend:
    def __init__(self, login: Login) -> None:
        self.server: str | None = login.server
        self.login = login
        self.api = ApiClient(login.server, login.token)
        self._relays: set[asyncio.Task[None]] = set()

    async def start(self, source: str, lifetime_s: int | None) -> Playground:
        path = Path(source)
        body: dict[str, Any] = {"lifetime_s": lifetime_s}
        if path.suffix in (".yaml", ".yml", ".json") or path.is_file():
            try:
                body["manifest"] = path.read_text()
            except OSError as exc:
                raise NotFound(f"manifest file {source} cannot be read: {exc.strerror}") from exc
        else:
            body["name"] = source
        data = await self.api.call("POST", "/api/playgrounds", body, timeout=_START_TIMEOUT_S)
        return playground_from(data)

    async def list(self) -> list[Playground]:
        return [playground_from(p) for p in await self.api.call("GET", "/api/playgrounds")]

    async def get(self, playground_id: str) -> Playground:
        return playground_from(await self.api.call("GET", f"/api/playgrounds/{playground_id}"))

    async def stop(self, playground_id: str) -> Playground:
        path = f"/api/playgrounds/{playground_id}/stop"
        return playground_from(await self.api.call("POST", path, timeout=_START_TIMEOUT_S))

    async def restart(self, playground_id: str) -> Playground:
        path = f"/api/playgrounds/{playground_id}/restart"
        return playground_from(await self.api.call("POST", path, timeout=_START_TIMEOUT_S))

    async def destroy(self, playground_id: str) -> None:
        path = f"/api/playgrounds/{playground_id}"
        await self.api.call("DELETE", path, timeout=_START_TIMEOUT_S)

    async def ssh_keys(self, playground_id: str) -> SshKeys:
        data = await self.api.call("GET", f"/api/playgrounds/{playground_id}/ssh-config")
        return SshKeys(
            user=data["user"],
            client_key=data["client_key"],
            host_keys={m["name"]: m["host_key"] for m in data["machines"]},
        )

    async def connect(self, playground_id: str, machine: str | None) -> Connection:
        keys = await self.ssh_keys(playground_id)
        name = _machine(playground_id, machine, list(keys.host_keys))
        stream = await self.open_stream(playground_id, name)
        sock, relay = bridge_socket(stream)
        self._relays.add(relay)
        relay.add_done_callback(self._relays.discard)
        target = Target(
            address=f"{name}.{playground_id}",
            port=22,
            host_public_key=keys.host_keys[name],
            client_private_key=keys.client_key,
            user=keys.user,
        )
        return await connect_over(target, sock)

    async def open_stream(self, playground_id: str, machine: str | None) -> Stream:
        if machine is None:
            machine = (await self.get(playground_id)).machines[0].name
        return await open_tunnel(self.login.server, self.login.token, playground_id, machine)

    async def close(self) -> None:
        for relay in list(self._relays):
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
        await self.api.close()


def _machine(playground_id: str, machine: str | None, names: list[str]) -> str:
    if machine is None:
        return names[0]
    if machine not in names:
        raise NotFound(
            f"playground {playground_id} has no machine {machine!r} (machines: {', '.join(names)})"
        )
    return machine
