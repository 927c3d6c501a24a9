"""Ports a machine serves, reached over HTTP (and WebSocket) through the server.

    /p/{playground}/{machine}/{port}/...   the owner only (cookie or Bearer token);
                                           anyone else, signed in or not, gets 404
    /s/{token}/...                         a share link: anyone holding it

With `LABYARD_PORTS_DOMAIN=labs.example.com`, the host names
`<port>-<machine>-<playground>.labs.example.com` and `s-<token>.labs.example.com` route the
same way, each port on an origin of its own (so the page's cookies and scripts stay its
own). Share links served on labyard's own origin get a CSP sandbox instead.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, WebSocket
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from labyard.access import PortStream
from labyard.api._proxy import Upstream, path_below, proxy_http, proxy_websocket
from labyard.api.deps import get_labyard, optional_user, websocket_user
from labyard.errors import LabyardError, NotFound
from labyard.services import Labyard, User

router = APIRouter(include_in_schema=False)

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
PRIVATE = "/p/{playground_id}/{machine}/{port}"
SHARED = "/s/{token}"
# Set by `SubdomainPorts`: the public prefix of the machine's `/` ("" on its own host).
PREFIX_KEY = "labyard.port_prefix"


_PORT = re.compile(r"[1-9][0-9]{0,4}")


def port_number(text: str) -> int:
    """The port a path names: digits only, 1-65535 (`80.0`, `+80`, `080` are no ports)."""
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise NotFound(f"{text[:20]!r} is not a TCP port (1-65535)", reason="bad_port")
    return int(text)


def _upstream(
    connection: Request | WebSocket, machine: Machine, route: str, *, sandbox: bool = False
) -> Upstream:
    """Where to send a request that came in on `route` (`/p/...` or `/s/...`)."""
    public: str = connection.scope.get(PREFIX_KEY, route)
    ports = get_labyard(connection).machine_ports
    playground_id, name, port, owner = machine

    async def open_port() -> PortStream:
        return await ports.open(playground_id, name, port, owner)

    return Upstream(
        open_port,
        port,
        path_below(connection, route),
        public,
        sandbox=sandbox and bool(public),
        drop_authorization=_bearer(connection),
    )


Machine = tuple[str, str, int, str | None]
"""(playground id, machine, port, owner to check or None): the port a request goes to."""


def _private(
    labyard: Labyard, user: User | None, playground_id: str, machine: str, port: str
) -> Machine:
    """The machine's port, for its owner; everyone else learns nothing (404)."""
    if user is None:
        raise NotFound(f"no playground {playground_id!r}")
    number = port_number(port)
    labyard.playgrounds.target(playground_id, machine, owner=user.owner)  # NotFound if not theirs
    return (playground_id, machine, number, user.owner)


def _shared(labyard: Labyard, token: str) -> Machine:
    share = labyard.shares.resolve(token)
    return (share.playground_id, share.machine, share.port, None)


def _bearer(connection: Request | WebSocket) -> bool:
    return connection.headers.get("authorization", "").lower().startswith("bearer ")


@router.get(PRIVATE)
@router.get(SHARED)
def add_slash(request: Request) -> Response:
    """`/p/id/machine/8080` -> `/p/id/machine/8080/`, so the page's relative links work."""
    return RedirectResponse(request.url.replace(path=request.url.path + "/"), status_code=307)


@router.api_route(PRIVATE + "/{path:path}", methods=METHODS)
async def private_port(
    request: Request, playground_id: str, machine: str, port: str, path: str
) -> Response:
    user = optional_user(request)
    target = _private(get_labyard(request), user, playground_id, machine, port)
    route = f"/p/{playground_id}/{machine}/{port}"
    return await proxy_http(request, _upstream(request, target, route))


@router.api_route(SHARED + "/{path:path}", methods=METHODS)
async def shared_port(request: Request, token: str, path: str) -> Response:
    target = _shared(get_labyard(request), token)
    upstream = _upstream(request, target, f"/s/{token}", sandbox=True)
    return await proxy_http(request, upstream)


@router.websocket(PRIVATE + "/{path:path}")
async def private_port_websocket(
    websocket: WebSocket, playground_id: str, machine: str, port: str, path: str
) -> None:
    try:
        try:
            user: User | None = websocket_user(websocket)
        except LabyardError:
            user = None
        target = _private(get_labyard(websocket), user, playground_id, machine, port)
    except LabyardError as exc:
        await _refuse(websocket, exc)
        return
    route = f"/p/{playground_id}/{machine}/{port}"
    await proxy_websocket(websocket, _upstream(websocket, target, route))


@router.websocket(SHARED + "/{path:path}")
async def shared_port_websocket(websocket: WebSocket, token: str, path: str) -> None:
    try:
        target = _shared(get_labyard(websocket), token)
    except LabyardError as exc:
        await _refuse(websocket, exc)
        return
    await proxy_websocket(websocket, _upstream(websocket, target, f"/s/{token}"))


async def _refuse(websocket: WebSocket, exc: LabyardError) -> None:
    # No error frame here: the page on the other end speaks the machine's protocol.
    await websocket.accept()
    await websocket.close(4000 + exc.http_status, exc.reason)


# -- subdomain mode ----------------------------------------------------------------------

_PORT_HOST = re.compile(r"(?P<port>\d{1,5})-(?P<machine>[a-z][a-z0-9-]*)-(?P<id>[a-z0-9]{8})")
_SHARE_HOST = re.compile(r"s-(?P<token>[0-9a-f]{16,64})")


def port_path(label: str) -> str | None:
    """The path a host label of the ports domain stands for, or None if it is no port's."""
    if match := _PORT_HOST.fullmatch(label):
        return f"/p/{match['id']}/{match['machine']}/{match['port']}"
    if match := _SHARE_HOST.fullmatch(label):
        return f"/s/{match['token']}"
    return None


class SubdomainPorts:
    """ASGI middleware: requests for `<label>.<domain>` go to the port the label names;
    every other host name is left alone. Does nothing without a domain."""

    def __init__(self, app: ASGIApp, domain: str | None) -> None:
        self.app = app
        self.suffix = "." + domain.lower().strip(".") if domain else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = _host(scope) if scope["type"] in ("http", "websocket") else ""
        if self.suffix is None or not host.endswith(self.suffix):
            await self.app(scope, receive, send)
        elif (prefix := port_path(host.removesuffix(self.suffix))) is None:
            await _not_found(scope, receive, send)
        else:
            raw = scope.get("raw_path") or scope["path"].encode()
            scope = {
                **scope,
                "path": prefix + scope["path"],
                "raw_path": prefix.encode() + raw,
                PREFIX_KEY: "",
            }
            await self.app(scope, receive, send)


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return str(value.decode("latin-1").rsplit(":", 1)[0].lower())
    return ""


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    body = {"error": {"message": "no such port", "reason": "not_found"}}
    if scope["type"] == "http":
        await JSONResponse(body, status_code=404)(scope, receive, send)
    else:
        await send({"type": "websocket.close", "code": 4404, "reason": "not_found"})
