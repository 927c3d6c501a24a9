"""Reverse-proxy one request (HTTP or WebSocket) to a port in a machine.

What is passed on: the method, the path below the public prefix, the query, the body
(streamed both ways) and every header except hop-by-hop ones, labyard's own cookies and the
labyard token that authenticated the request; `X-Forwarded-For/-Proto/-Host/-Prefix` say
where the request came from. Redirects to the machine's own root are rewritten below the
public prefix. Upstream failures become `AccessFailure` (HTTP 502).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx
import websockets
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from labyard.access import PortStream, bridge_socket
from labyard.errors import AccessFailure

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# The WebSocket client library writes its own handshake headers.
_WEBSOCKET_HANDSHAKE = frozenset({"origin", "user-agent", "content-length"})
# The ASGI server writes these on every response itself.
_SERVER_WRITES = frozenset({"date", "server"})
_OUR_COOKIES = "labyard_"
# A page served from labyard's own origin (the path form of a share link) must not act as
# labyard: without allow-same-origin its scripts run in an opaque origin.
SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"
_CONNECT_TIMEOUT_S = 10.0
_HTTPCORE_ERRORS = (httpcore.NetworkError, httpcore.ProtocolError, httpcore.TimeoutException)
# Close codes that describe a close but may not be sent in a close frame.
_RESERVED_CLOSE_CODES = frozenset({1005, 1006, 1015})


Opener = Callable[[], Awaitable[PortStream]]
"""Opens a byte stream to the port in the machine (services/machine_ports.py, over SSH)."""


@dataclass(frozen=True)
class Upstream:
    """Where a request goes, and how it looks from outside."""

    open: Opener
    port: int
    path: str
    """The path and query to ask the machine for (see `path_below`)."""
    prefix: str
    """The public path in front of the machine's `/` ("" when a host name maps to it)."""
    sandbox: bool = False
    """Serve responses with a CSP sandbox (pages on labyard's own origin, shown to others)."""
    drop_authorization: bool = False
    """The Authorization header carried a labyard token: keep it from the machine."""

    @property
    def origin(self) -> str:
        """As the machine sees itself reached: its own port on localhost (direct-tcpip)."""
        return f"localhost:{self.port}"


def path_below(connection: HTTPConnection, route: str) -> str:
    """The raw path and query below the route's prefix, as the machine should see them."""
    raw = connection.scope.get("raw_path") or connection.scope["path"].encode()
    path = raw.decode("latin-1").split("?", 1)[0][len(route) :] or "/"
    query = connection.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def _without_our_cookies(value: str) -> str:
    kept = (c.strip() for c in value.split(";"))
    return "; ".join(c for c in kept if c and not c.startswith(_OUR_COOKIES))


def forwarded_headers(
    connection: HTTPConnection, upstream: Upstream, skip: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """The request's headers for the machine: end-to-end ones plus X-Forwarded-*."""
    listed = connection.headers.get("connection", "").lower().split(",")
    dropped = HOP_BY_HOP | {t.strip() for t in listed} | {"host", *skip}
    headers: list[tuple[str, str]] = []
    forwarded_for = ""
    for name, value in connection.headers.items():
        if name in dropped or (name == "authorization" and upstream.drop_authorization):
            continue
        if name == "x-forwarded-for":
            forwarded_for = value
        elif name == "cookie":
            if cookies := _without_our_cookies(value):
                headers.append((name, cookies))
        elif not name.startswith("x-forwarded-"):
            headers.append((name, value))
    client = connection.client.host if connection.client else ""
    headers += [
        ("x-forwarded-for", f"{forwarded_for}, {client}" if forwarded_for else client),
        ("x-forwarded-proto", connection.url.scheme.replace("ws", "http")),
        ("x-forwarded-host", connection.headers.get("host", "")),
    ]
    if upstream.prefix:
        headers.append(("x-forwarded-prefix", upstream.prefix))
    return headers


def _location(value: str, upstream: Upstream) -> str:
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc in (upstream.origin, "localhost"):
        value = urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))
    if value.startswith("/") and not value.startswith("//"):
        return upstream.prefix + value
    return value


def _response_headers(response: httpx.Response, upstream: Upstream) -> list[tuple[bytes, bytes]]:
    listed = response.headers.get("connection", "").lower().split(",")
    dropped = HOP_BY_HOP | _SERVER_WRITES | {t.strip() for t in listed}
    headers: list[tuple[bytes, bytes]] = []
    for name, value in response.headers.multi_items():
        if name in dropped or (name == "set-cookie" and value.startswith(_OUR_COOKIES)):
            continue
        if name == "location":
            value = _location(value, upstream)
        headers.append((name.encode("latin-1"), value.encode("latin-1")))
    if upstream.sandbox:
        headers.append((b"content-security-policy", SANDBOX.encode()))
    return headers


class _Channel(httpcore.AsyncNetworkStream):
    """httpcore's view of a byte stream to the machine's port."""

    def __init__(self, stream: PortStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            await self._stream.write(buffer)

    async def aclose(self) -> None:
        await self._stream.close()


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: httpcore.Response, connection: httpcore.AsyncHTTP11Connection):
        self._response, self._connection = response, connection

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_stream():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()
        await self._connection.aclose()


async def _send(request: httpx.Request, upstream: Upstream) -> httpx.Response:
    """One HTTP/1.1 exchange on a `direct-tcpip` channel of its own, on the machine's kept
    SSH connection: no HTTP connection state per machine. (A keep-alive pool of channels
    would save the channel's round trip, 1-3 ms a request: bench/port_proxy.py.)"""
    async with asyncio.timeout(_CONNECT_TIMEOUT_S):
        stream = await upstream.open()
    origin = httpcore.Origin(b"http", b"localhost", upstream.port)
    connection = httpcore.AsyncHTTP11Connection(origin, _Channel(stream))
    outgoing = httpcore.Request(
        request.method,
        httpcore.URL(
            scheme=b"http", host=b"localhost", port=upstream.port, target=request.url.raw_path
        ),
        headers=request.headers.raw,
        content=request.stream,
    )
    try:
        answer = await connection.handle_async_request(outgoing)
    except BaseException:
        await connection.aclose()
        raise
    return httpx.Response(answer.status, headers=answer.headers, stream=_Body(answer, connection))


def _unreachable(upstream: Upstream, exc: BaseException) -> AccessFailure:
    return AccessFailure(
        f"nothing answered on port {upstream.port} of the machine",
        detail=f"{type(exc).__name__}: {exc}",
        reason="port_unreachable",
    )


async def proxy_http(request: Request, upstream: Upstream) -> Response:
    """Forward `request` to the machine and stream the answer back."""
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    outgoing = httpx.Request(
        request.method,
        f"http://{upstream.origin}{upstream.path}",
        headers=forwarded_headers(request, upstream),
        content=request.stream() if has_body else None,
    )
    try:
        answer = await _send(outgoing, upstream)
    except (AccessFailure, TimeoutError, *_HTTPCORE_ERRORS) as exc:
        raise _unreachable(upstream, exc) from exc
    response = StreamingResponse(_body(answer), status_code=answer.status_code)
    response.raw_headers = _response_headers(answer, upstream)
    return response


async def _body(answer: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    except (AccessFailure, *_HTTPCORE_ERRORS):
        return  # the machine hung up mid-body; the client sees a short response
    finally:
        await answer.aclose()


async def proxy_websocket(websocket: WebSocket, upstream: Upstream) -> None:
    """Open the same WebSocket on the machine, then relay messages both ways."""
    url = f"ws://{upstream.origin}{upstream.path}"
    headers = forwarded_headers(websocket, upstream, skip=_WEBSOCKET_HANDSHAKE)
    headers = [(n, v) for n, v in headers if not n.startswith("sec-websocket-")]
    offered = [Subprotocol(p) for p in websocket.scope.get("subprotocols", [])]
    relay: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(_CONNECT_TIMEOUT_S):
            sock, relay = bridge_socket(await upstream.open())
        machine = await websockets.connect(
            url,
            sock=sock,
            additional_headers=headers,
            subprotocols=offered or None,
            user_agent_header=websocket.headers.get("user-agent"),
            origin=None,
            proxy=None,
            compression=None,
            max_size=None,
            open_timeout=_CONNECT_TIMEOUT_S,
        )
    except (AccessFailure, OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        if relay is not None:
            relay.cancel()
        await websocket.accept()
        await _close(websocket, 4502, _unreachable(upstream, exc).message)
        return
    try:
        async with machine:
            await websocket.accept(subprotocol=machine.subprotocol)
            await _relay(websocket, machine)
    finally:
        relay.cancel()


async def _relay(websocket: WebSocket, machine: ClientConnection) -> None:
    inbound = asyncio.create_task(_client_to_machine(websocket, machine))
    outbound = asyncio.create_task(_machine_to_client(machine, websocket))
    try:
        await asyncio.wait({inbound, outbound}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (inbound, outbound):
            task.cancel()
        await asyncio.gather(inbound, outbound, return_exceptions=True)
    code = machine.close_code
    if code is None or code in _RESERVED_CLOSE_CODES:
        code = 1000
    await _close(websocket, code, machine.close_reason or "")


async def _client_to_machine(websocket: WebSocket, machine: ClientConnection) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            code = message.get("code", 1000)
            await machine.close(code if code not in _RESERVED_CLOSE_CODES else 1000)
            return
        if message.get("bytes") is not None:
            await machine.send(message["bytes"])
        elif message.get("text") is not None:
            await machine.send(message["text"])


async def _machine_to_client(machine: ClientConnection, websocket: WebSocket) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for message in machine:
            if isinstance(message, bytes):
                await websocket.send_bytes(message)
            else:
                await websocket.send_text(message)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code, reason.encode()[:120].decode(errors="ignore"))
