"""An async client for the LXD or Incus REST API (`/1.0`), over the unix socket or HTTPS.

LXD and Incus speak the same protocol: the same paths (`/1.0/instances`, which LXD 5.0 also
has), the same envelope, operations and errors. They differ in the names of their headers
(`X-LXD-*` or `X-Incus-*`): the server says which it is (`environment.server`) and the client
picks the prefix from that. Only what the driver uses is here.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from labyard.errors import RuntimeFailure

OPERATION_POLL_S = 25
"""One `/wait` at most this long, then ask again (a member's own operations answer at once
when asked through another member, so the client loops either way)."""
CALL_TIMEOUT_S = 60.0
BUSY_RETRIES = 50


class LxdError(RuntimeFailure):
    """The server answered with an error; `status` is its HTTP code (404: not there)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    """Where the server is and how to prove who we are to it."""

    url: str
    """`unix:///path/to/unix.socket` or `https://host:8443`."""
    client_cert: Path | None = None
    client_key: Path | None = None
    server_cert: Path | None = None
    """Pin the server to this certificate (the cluster's `cluster.crt`); else the system CAs."""


@dataclass
class Server:
    """What the server said it is, asked once."""

    kind: str
    """`lxd` or `incus`."""
    version: str
    clustered: bool
    extensions: frozenset[str] = field(default_factory=frozenset)

    @property
    def header_prefix(self) -> str:
        return "X-Incus-" if self.kind == "incus" else "X-LXD-"


def _transport(endpoint: Endpoint) -> tuple[httpx.AsyncHTTPTransport, str]:
    parsed = urllib.parse.urlparse(endpoint.url)
    if parsed.scheme == "unix":
        return httpx.AsyncHTTPTransport(uds=parsed.path), "http://lxd"
    if parsed.scheme != "https":
        raise RuntimeFailure(
            f"the LXD server {endpoint.url!r} is neither unix:///path/to/unix.socket "
            "nor https://host:port"
        )
    context = ssl.create_default_context(
        cafile=str(endpoint.server_cert) if endpoint.server_cert else None
    )
    if endpoint.server_cert:
        context.check_hostname = False  # pinned to the one certificate instead
    if endpoint.client_cert:
        context.load_cert_chain(endpoint.client_cert, endpoint.client_key)
    return httpx.AsyncHTTPTransport(verify=context), endpoint.url.rstrip("/")


class Lxd:
    """One server (a cluster answers on any member), in one project."""

    def __init__(self, endpoint: Endpoint, project: str) -> None:
        transport, base = _transport(endpoint)
        self.endpoint = endpoint
        self.project = project
        self._http = httpx.AsyncClient(transport=transport, base_url=base, timeout=CALL_TIMEOUT_S)
        self._server: Server | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def server(self) -> Server:
        if self._server is None:
            meta = await self.get("/1.0", project=False)
            env = meta.get("environment", {})
            self._server = Server(
                kind=str(env.get("server", "lxd")),
                version=str(env.get("server_version", "")),
                clustered=bool(env.get("server_clustered", False)),
                extensions=frozenset(meta.get("api_extensions", [])),
            )
        return self._server

    async def headers(self, **names: str) -> dict[str, str]:
        """`uid=0` -> `X-LXD-uid: 0` (or `X-Incus-uid`)."""
        prefix = (await self.server()).header_prefix
        return {f"{prefix}{name}": value for name, value in names.items()}

    # -- requests --------------------------------------------------------------------------

    def _params(self, project: bool, params: Mapping[str, str] | None) -> dict[str, str]:
        merged = dict(params or {})
        if project:
            merged.setdefault("project", self.project)
        return merged

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        project: bool = True,
        wait: bool = True,
    ) -> Any:
        """The response's metadata; for an async operation, its result once it has ended
        (or the operation itself, with `wait=False`). LxdError for any error."""
        for attempt in range(BUSY_RETRIES + 1):
            try:
                response = await self._http.request(
                    method,
                    path,
                    json=body if content is None else None,
                    content=content,
                    params=self._params(project, params),
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                where = self.endpoint.url
                raise LxdError(f"the LXD server at {where} did not answer: {exc}", 0) from exc
            try:
                envelope = _envelope(response)
                break
            except LxdError as exc:
                # An instance is busy for a moment after its init died (LXD's own stop runs):
                # a change asked meanwhile goes through once that is done.
                busy = "is busy running" in str(exc) and content is None
                if not busy or attempt == BUSY_RETRIES:
                    raise
            await asyncio.sleep(0.2)
        if envelope.get("type") == "async" and wait:
            return await self.wait(str(envelope["operation"]))
        return envelope.get("metadata")

    async def get(self, path: str, project: bool = True, **params: str) -> Any:
        return await self.request("GET", path, params=params, project=project)

    async def wait(self, operation: str) -> Any:
        """Wait for an operation to end; its metadata, or LxdError with its error."""
        while True:
            try:
                response = await self._http.get(
                    f"{operation}/wait",
                    params={"timeout": str(OPERATION_POLL_S)},
                    timeout=OPERATION_POLL_S + CALL_TIMEOUT_S,
                )
            except httpx.HTTPError as exc:
                raise LxdError(f"lost the LXD operation {operation}: {exc}", 0) from exc
            meta = _envelope(response).get("metadata") or {}
            status = meta.get("status")
            if status == "Success":
                return meta.get("metadata")
            if status in ("Failure", "Cancelled"):
                raise LxdError(str(meta.get("err") or status), 500)
            await asyncio.sleep(0.05)  # still running (asked on another member: it says so)

    async def download(self, path: str, **params: str) -> bytes:
        response = await self._http.get(path, params=self._params(True, params))
        if response.status_code != 200:
            _envelope(response)
        return response.content


def _envelope(response: httpx.Response) -> dict[str, Any]:
    try:
        envelope = response.json()
    except ValueError:
        envelope = {}
    if response.status_code >= 400 or envelope.get("type") == "error":
        error = envelope.get("error") or response.reason_phrase
        raise LxdError(str(error), int(envelope.get("error_code") or response.status_code))
    return envelope if isinstance(envelope, dict) else {}


def name_of(url: str) -> str:
    """The name at the end of an object's URL in a listing (`/1.0/networks/br0?project=x`)."""
    return str(url).split("?")[0].rsplit("/", 1)[-1]


def is_missing(exc: LxdError) -> bool:
    return exc.status == 404
