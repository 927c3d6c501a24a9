"""The remote backend: a labyard server's JSON API, and SSH through its WebSocket tunnel.

SSH runs here, end to end: the server pipes bytes to the machine's sshd and never sees the
session. The playground's client key and the pinned host keys come from `/ssh-config`.
The SSH client (asyncssh) and the tunnel (websockets) are imported by the calls that use
them, so `playground list` and friends start with the HTTP client only.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labyard.cli._client import ApiClient
from labyard.cli._views import SshKeys
from labyard.cli.credentials import Login
from labyard.errors import NotFound
from labyard.types import Playground

if TYPE_CHECKING:
    from labyard.access import Connection
    from labyard.access.bridge import Stream

# Starting waits for every machine to answer; the server gives up after its own timeout.
_START_TIMEOUT_S = 300.0


def _manifest_text(path: Path) -> str:
    """The manifest file as the server gets it: as written, or, when machine files name a
    `source` beside it (which the server cannot read), checked here and sent whole."""
    from labyard.manifest import load_manifest

    try:
        text = path.read_text()
    except OSError as exc:
        raise NotFound(f"manifest file {path} cannot be read: {exc.strerror}") from exc
    if "source" not in text:
        return text
    manifest = load_manifest(str(path))
    if not any(f.source for m in manifest.machines for f in m.files):
        return text
    return json.dumps(manifest.model_dump(mode="json"))


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
            body["manifest"] = _manifest_text(path)
        else:
            body["name"] = source
        data = await self.api.call("POST", "/api/playgrounds", body, timeout=_START_TIMEOUT_S)
        return Playground.from_json(data)

    async def list(self) -> list[Playground]:
        return [Playground.from_json(p) for p in await self.api.call("GET", "/api/playgrounds")]

    async def get(self, playground_id: str) -> Playground:
        return Playground.from_json(await self.api.call("GET", f"/api/playgrounds/{playground_id}"))

    async def stop(self, playground_id: str) -> Playground:
        path = f"/api/playgrounds/{playground_id}/stop"
        return Playground.from_json(await self.api.call("POST", path, timeout=_START_TIMEOUT_S))

    async def restart(self, playground_id: str) -> Playground:
        path = f"/api/playgrounds/{playground_id}/restart"
        return Playground.from_json(await self.api.call("POST", path, timeout=_START_TIMEOUT_S))

    async def destroy(self, playground_id: str) -> None:
        path = f"/api/playgrounds/{playground_id}"
        await self.api.call("DELETE", path, timeout=_START_TIMEOUT_S)

    async def save(self, playground_id: str, name: str) -> dict[str, Any]:
        path = f"/api/playgrounds/{playground_id}/save"
        saved: dict[str, Any] = await self.api.call(
            "POST", path, {"name": name}, timeout=_START_TIMEOUT_S
        )
        return saved

    async def fork(self, playground_id: str) -> Playground:
        path = f"/api/playgrounds/{playground_id}/fork"
        return Playground.from_json(await self.api.call("POST", path, timeout=_START_TIMEOUT_S))

    async def start_saved(self, name: str, lifetime_s: int | None) -> Playground:
        path = f"/api/saved-playgrounds/{name}/start"
        body = {"lifetime_s": lifetime_s}
        return Playground.from_json(
            await self.api.call("POST", path, body, timeout=_START_TIMEOUT_S)
        )

    async def saved(self) -> builtins.list[dict[str, Any]]:
        found: builtins.list[dict[str, Any]] = await self.api.call("GET", "/api/saved-playgrounds")
        return found

    async def ssh_keys(self, playground_id: str) -> SshKeys:
        data = await self.api.call("GET", f"/api/playgrounds/{playground_id}/ssh-config")
        return SshKeys(
            user=data["user"],
            client_key=data["client_key"],
            host_keys={m["name"]: m["host_key"] for m in data["machines"]},
        )

    async def connect(self, playground_id: str, machine: str | None) -> Connection:
        # Importing the tunnel and SSH clients takes longer than the server takes to
        # answer the two requests before them: do it meanwhile, on a thread.
        clients = asyncio.create_task(asyncio.to_thread(_import_clients))
        keys = await self.ssh_keys(playground_id)
        name = _machine(playground_id, machine, list(keys.host_keys))
        stream = await self.open_stream(playground_id, name)
        await clients
        from labyard.access import Target, connect_over
        from labyard.access.bridge import bridge_socket

        sock, relay = bridge_socket(stream)
        self._relays.add(relay)
        relay.add_done_callback(self._relays.discard)
        target = Target(
            where=f"{name}.{playground_id}",
            dial=None,  # reached over the tunnel's socket only
            host_public_key=keys.host_keys[name],
            client_private_key=keys.client_key,
            user=keys.user,
        )
        return await connect_over(target, sock)

    async def open_stream(self, playground_id: str, machine: str | None) -> Stream:
        from labyard.cli._pipes import open_tunnel

        if machine is None:
            machine = (await self.get(playground_id)).machines[0].name
        return await open_tunnel(self.login.server, self.login.token, playground_id, machine)

    async def devtools(self, playground_id: str) -> dict[str, Any]:
        view: dict[str, Any] = await self.api.call(
            "GET", f"/api/playgrounds/{playground_id}/devtools"
        )
        return view

    async def close(self) -> None:
        for relay in list(self._relays):
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
        await self.api.close()


def _import_clients() -> None:
    # websockets first: the tunnel opens before SSH (asyncssh) starts.
    for module in ("labyard.cli._pipes", "labyard.access"):
        importlib.import_module(module)


def _machine(playground_id: str, machine: str | None, names: list[str]) -> str:
    if machine is None:
        return names[0]
    if machine not in names:
        raise NotFound(
            f"playground {playground_id} has no machine {machine!r} (machines: {', '.join(names)})"
        )
    return machine
