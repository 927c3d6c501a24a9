"""Share links for a playground's ports: create, list, revoke (the owner only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from labyard.api.deps import LabyardDep, UserDep
from labyard.services import Share

router = APIRouter(prefix="/api", tags=["shares"])


class ShareRequest(BaseModel):
    machine: str = Field(max_length=64)
    port: int = Field(gt=0, le=65535)


def share_url(request: Request, share: Share, domain: str | None) -> str:
    """The public link: its own host name in subdomain mode, else a path on this server."""
    if domain:
        return f"{request.url.scheme}://s-{share.token}.{domain}/"
    return f"{request.base_url}s/{share.token}/"


def _out(request: Request, share: Share, labyard: LabyardDep) -> dict[str, object]:
    return {**share.to_json(), "url": share_url(request, share, labyard.settings.ports_domain)}


@router.post("/playgrounds/{playground_id}/shares", status_code=201)
async def create_share(
    playground_id: str, body: ShareRequest, request: Request, labyard: LabyardDep, user: UserDep
) -> dict[str, object]:
    """A public link to one port of one machine: anyone with the URL can use it."""
    share = await labyard.shares.create(playground_id, body.machine, body.port, user.owner)
    return _out(request, share, labyard)


@router.get("/playgrounds/{playground_id}/shares")
async def list_shares(
    playground_id: str, request: Request, labyard: LabyardDep, user: UserDep
) -> list[dict[str, object]]:
    shares = await labyard.shares.list(playground_id, user.owner)
    return [_out(request, share, labyard) for share in shares]


@router.delete("/playgrounds/{playground_id}/shares/{token}", status_code=204)
async def revoke_share(playground_id: str, token: str, labyard: LabyardDep, user: UserDep) -> None:
    """Revoke a link; it stops working at once."""
    await labyard.shares.revoke(playground_id, token, user.owner)
