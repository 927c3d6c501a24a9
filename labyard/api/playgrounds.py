"""The playground API: the catalog, and each user's own playgrounds (404 for anyone else's)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from labyard.api.deps import LabyardDep, UserDep, client_country
from labyard.api.health import START_SECONDS, STARTS
from labyard.errors import Forbidden, InvalidInput, LimitExceeded
from labyard.manifest import Manifest, manifest_from_text

router = APIRouter(prefix="/api", tags=["playgrounds"])


class StartRequest(BaseModel):
    name: str | None = Field(None, description="A playground from the catalog.")
    manifest: str | None = Field(None, description="A manifest as YAML text (authors only).")
    lifetime_s: int | None = Field(None, gt=0, le=7 * 86400)


class ExtendRequest(BaseModel):
    seconds: int = Field(900, gt=0, le=86400)


class ExecRequest(BaseModel):
    command: str = Field(max_length=100_000)
    machine: str | None = None
    timeout_s: float = Field(60, gt=0, le=3600)


@router.get("/catalog")
def catalog(labyard: LabyardDep) -> list[dict[str, Any]]:
    """Playgrounds anyone signed in can start."""
    return [entry.to_json() for entry in labyard.catalog.entries()]


@router.get("/playgrounds")
async def list_playgrounds(labyard: LabyardDep, user: UserDep) -> list[dict[str, Any]]:
    """Your playgrounds."""
    return [p.to_json() for p in await labyard.playgrounds.list(owner=user.owner)]


def _manifest(body: StartRequest, labyard: Any) -> Manifest:
    if (body.name is None) == (body.manifest is None):
        raise InvalidInput("give either `name` (from the catalog) or `manifest`, not both")
    if body.manifest is not None:  # who may start their own: the services' plan check says
        return manifest_from_text(body.manifest, "manifest")
    assert body.name is not None  # checked above
    entry: Manifest = labyard.catalog.get(body.name).manifest
    return entry


@router.post("/playgrounds", status_code=201)
async def start_playground(
    body: StartRequest, request: Request, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    """Start a playground; returns once every machine answers. Over the plan: 429 (403 for
    an own manifest the role and plan do not allow)."""
    manifest = _manifest(body, labyard)
    started = time.monotonic()
    try:
        playground = await labyard.playgrounds.start(
            manifest,
            owner=user.owner,
            lifetime_s=body.lifetime_s,
            launch=user.launch(
                own_manifest=body.manifest is not None, country=client_country(request)
            ),
        )
    except (LimitExceeded, Forbidden):
        raise  # refused by the plan: not a start that failed
    except BaseException:
        STARTS.labels("failed").inc()
        raise
    STARTS.labels("started").inc()
    START_SECONDS.observe(time.monotonic() - started)
    return playground.to_json()


@router.get("/playgrounds/{playground_id}")
async def get_playground(playground_id: str, labyard: LabyardDep, user: UserDep) -> dict[str, Any]:
    return (await labyard.playgrounds.get(playground_id, owner=user.owner)).to_json()


@router.post("/playgrounds/{playground_id}/stop")
async def stop_playground(playground_id: str, labyard: LabyardDep, user: UserDep) -> dict[str, Any]:
    return (await labyard.playgrounds.stop(playground_id, owner=user.owner)).to_json()


@router.post("/playgrounds/{playground_id}/restart")
async def restart_playground(
    playground_id: str, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    restarted = await labyard.playgrounds.restart(
        playground_id, owner=user.owner, account_id=user.id
    )
    return restarted.to_json()


@router.post("/playgrounds/{playground_id}/extend")
async def extend_playground(
    playground_id: str, body: ExtendRequest, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    """Add time, up to the plan's maximum lifetime counted from the start."""
    extended = await labyard.playgrounds.extend(
        playground_id, body.seconds, owner=user.owner, account_id=user.id
    )
    return extended.to_json()


@router.delete("/playgrounds/{playground_id}", status_code=204)
async def destroy_playground(playground_id: str, labyard: LabyardDep, user: UserDep) -> None:
    await labyard.playgrounds.destroy(playground_id, owner=user.owner)


@router.post("/playgrounds/{playground_id}/exec")
async def exec_in_playground(
    playground_id: str, body: ExecRequest, labyard: LabyardDep, user: UserDep
) -> dict[str, Any]:
    """Run a command in a machine and return its exit code and output."""
    async with await labyard.playgrounds.connect(
        playground_id, body.machine, owner=user.owner
    ) as c:
        result = await c.run(body.command, timeout=body.timeout_s)
    return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}


@router.get("/playgrounds/{playground_id}/ssh-config")
async def ssh_config(playground_id: str, labyard: LabyardDep, user: UserDep) -> dict[str, Any]:
    """What a client needs to SSH in through the server's tunnel: the playground's client
    key and each machine's pinned host key."""
    playground = await labyard.playgrounds.get(playground_id, owner=user.owner)
    targets = {
        m.name: labyard.playgrounds.target(playground_id, m.name, user.owner)
        for m in playground.machines
    }
    first = next(iter(targets.values()))
    return {
        "user": first.user,
        "client_key": first.client_private_key,
        "machines": [{"name": n, "host_key": t.host_public_key} for n, t in targets.items()],
    }
