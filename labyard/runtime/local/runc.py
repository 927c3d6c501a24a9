"""runc, driven through its CLI with a state root per labyard instance."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from labyard.errors import RuntimeFailure

_LIST_TRIES = 5


class Runc:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def _run(self, *args: str, log: Path | None = None) -> tuple[int, str, str]:
        self.root.mkdir(parents=True, exist_ok=True)
        stdout_target = open(log, "ab") if log else asyncio.subprocess.PIPE  # noqa: SIM115
        try:
            proc = await asyncio.create_subprocess_exec(
                "runc",
                "--root",
                str(self.root),
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout_target,
                stderr=stdout_target if log else asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise RuntimeFailure("runc is not installed; run scripts/setup.sh first") from exc
        finally:
            if log and not isinstance(stdout_target, int):
                stdout_target.close()
        out, err = await proc.communicate()
        assert proc.returncode is not None  # communicate() waited for the exit
        return proc.returncode, (out or b"").decode(), (err or b"").decode()

    async def create(self, container: str, bundle: Path, console_log: Path) -> int:
        """Create the container, stopped before its init runs; returns the init's host pid.

        The container's stdio goes to `console_log` (its boot messages).
        """
        code, _, _ = await self._run("create", "--bundle", str(bundle), container, log=console_log)
        state = await self.state(container) if code == 0 else None
        pid = self.pid(state) if state else None
        if pid is None:
            tail = console_log.read_text(errors="replace")[-2000:] if console_log.exists() else ""
            raise RuntimeFailure(f"machine {container} failed to start", detail=tail)
        return pid

    async def start(self, container: str) -> None:
        """Let a created container's init run."""
        code, _, err = await self._run("start", container)
        if code != 0:
            raise RuntimeFailure(f"machine {container} failed to start", detail=err)

    async def state(self, container: str) -> dict[str, object] | None:
        code, out, _ = await self._run("state", container)
        if code != 0:
            return None
        state: dict[str, object] = json.loads(out)
        return state

    async def kill(self, container: str, signal: str) -> None:
        """Send `signal` (a name runc knows, or a number); a stopped container is fine."""
        code, _, err = await self._run("kill", container, signal)
        if code != 0 and "not running" not in err and "does not exist" not in err:
            raise RuntimeFailure(f"cannot signal machine {container}", detail=err)

    async def delete(self, container: str) -> None:
        """Force-delete; a container that does not exist is fine."""
        code, _, err = await self._run("delete", "--force", container)
        if code != 0 and "does not exist" not in err and "not exist" not in err:
            raise RuntimeFailure(f"cannot delete machine {container}", detail=err)

    async def list(self) -> list[str]:
        if not self.root.exists():
            return []
        # `runc list` fails when a container is deleted while it reads the state dir;
        # listing again a moment later is the cure.
        for _ in range(_LIST_TRIES):
            code, out, err = await self._run("list", "--format", "json")
            if code == 0:
                return [c["id"] for c in json.loads(out or "null") or []]
            await asyncio.sleep(0.05)
        raise RuntimeFailure("cannot list machines", detail=err)

    def pid(self, state: dict[str, object]) -> int | None:
        pid = state.get("pid")
        return pid if isinstance(pid, int) and pid > 0 and os.path.exists(f"/proc/{pid}") else None
