"""The local backend: this host's labyard instance, through its services.

Imported only when a command acts locally (see `backend.choose`): it loads the whole
stack, from the database to the runtime.
"""

from __future__ import annotations

import builtins
from typing import Any

from labyard.access import Connection
from labyard.access.bridge import Stream
from labyard.cli._pipes import TcpStream
from labyard.cli._views import SshKeys
from labyard.manifest import load_manifest
from labyard.services import Labyard, reconcile
from labyard.services.tasks.pool import MachinePool
from labyard.services.tasks.runs import RunLog
from labyard.settings import Settings
from labyard.types import Playground


class LocalBackend:
    server: str | None = None

    def __init__(self) -> None:
        self.labyard = Labyard(Settings.from_env())
        self._observer: tuple[str, RunLog, MachinePool] | None = None
        """`content debug`'s: the playground, its checks' output, its SSH connections."""

    async def start(self, source: str, lifetime_s: int | None) -> Playground:
        manifest = load_manifest(source)
        return await self.labyard.playgrounds.start(manifest, lifetime_s=lifetime_s)

    async def list(self) -> list[Playground]:
        await reconcile(self.labyard.playgrounds)  # expired ones are removed first
        return await self.labyard.playgrounds.list()

    async def get(self, playground_id: str) -> Playground:
        return await self.labyard.playgrounds.get(playground_id)

    async def stop(self, playground_id: str) -> Playground:
        return await self.labyard.playgrounds.stop(playground_id)

    async def restart(self, playground_id: str) -> Playground:
        return await self.labyard.playgrounds.restart(playground_id)

    async def destroy(self, playground_id: str) -> None:
        await self.labyard.playgrounds.destroy(playground_id)

    async def connect(self, playground_id: str, machine: str | None) -> Connection:
        return await self.labyard.playgrounds.connect(playground_id, machine)

    async def save(self, playground_id: str, name: str) -> dict[str, Any]:
        return (await self.labyard.saved.save(playground_id, name)).to_json()

    async def fork(self, playground_id: str) -> Playground:
        return await self.labyard.saved.fork(playground_id)

    async def start_saved(self, name: str, lifetime_s: int | None) -> Playground:
        return await self.labyard.saved.start("", name, lifetime_s=lifetime_s)

    async def saved(self) -> builtins.list[dict[str, Any]]:
        return [s.to_json() for s in self.labyard.saved.list("")]

    async def ssh_keys(self, playground_id: str) -> SshKeys:
        playground = await self.labyard.playgrounds.get(playground_id)
        targets = [
            self.labyard.playgrounds.target(playground_id, m.name) for m in playground.machines
        ]
        names = [m.name for m in playground.machines]
        return SshKeys(
            user=targets[0].user,
            client_key=targets[0].client_private_key,
            host_keys={n: t.host_public_key for n, t in zip(names, targets, strict=True)},
        )

    async def open_stream(self, playground_id: str, machine: str | None) -> Stream:
        return TcpStream(*await self.labyard.playgrounds.open_sshd(playground_id, machine))

    async def devtools(self, playground_id: str) -> dict[str, Any]:
        """The server's checker and its output live in the server: here the running tasks'
        checks are run once more per call, into a log kept across calls (devtools.py)."""
        if self._observer is None or self._observer[0] != playground_id:
            pool = MachinePool(self.labyard.playgrounds, playground_id)
            self._observer = (playground_id, RunLog(), pool)
        _, log, pool = self._observer
        return await self.labyard.task_dev_tools.observe(playground_id, log, pool)

    async def close(self) -> None:
        if self._observer is not None:
            self._observer[2].close()
        self.labyard.close()
