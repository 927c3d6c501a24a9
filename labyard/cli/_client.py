"""The server's JSON API from the CLI: requests with the API token, errors translated.

An error answer becomes the labyard error the server raised (same message, same exit code:
422 -> 2, 404 -> 3, 409/429 -> 4, 502/503 -> 5, 401 -> 6); transport errors become
`ServerUnreachable` (exit 5) and never escape as they are.

Requests go through the standard library (`urllib.request`: HTTP(S), the environment's
proxies, the system's CA certificates), each on a daemon thread so the event loop stays
free and Ctrl-C never waits for a slow server. A CLI makes a handful of requests; the
standard library keeps `labyard playground list` from loading an HTTP stack (and the CLI
that httpx brings along) at start-up. Redirects are not followed: the token is not sent on
to another address, and a POST never silently turns into a GET.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from labyard.errors import (
    AccessFailure,
    Conflict,
    InvalidInput,
    LabyardError,
    LimitExceeded,
    NotFound,
    RuntimeFailure,
    Unauthenticated,
)

T = TypeVar("T")

_ERRORS: dict[int, type[LabyardError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    404: NotFound,
    409: Conflict,
    422: InvalidInput,
    429: LimitExceeded,
    502: AccessFailure,
    503: RuntimeFailure,
}
_TIMEOUT_S = 30.0


class ServerUnreachable(LabyardError):
    reason = "server_unreachable"
    exit_code = 5


def error_for(status: int, message: str, reason: str | None = None) -> LabyardError:
    """The labyard error for an HTTP status (or a WebSocket close code 4000 + status)."""
    return _ERRORS.get(status, LabyardError)(message, reason=reason)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx answer then comes back as an HTTPError


def _error(server: str, answer: urllib.error.HTTPError, content: bytes) -> LabyardError:
    status = answer.code
    if 300 <= status < 400:
        where = answer.headers.get("location", "elsewhere")
        return error_for(status, f"{server} redirects to {where}; give the server's own address")
    try:
        error = json.loads(content)["error"]
        message, reason = str(error["message"]), str(error["reason"])
    except (ValueError, KeyError, TypeError):
        message, reason = f"the server answered {status}", None
    return error_for(status, message, reason)


async def _in_thread(call: Callable[[], T]) -> T:
    """`call()` on a daemon thread: awaiting it can be cancelled, and exiting never waits
    for it (`asyncio.to_thread` would hold Ctrl-C until a slow answer came)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # else the awaiting task was cancelled
            outcome()

    def work() -> None:
        try:
            outcome = functools.partial(future.set_result, call())
        except BaseException as exc:  # handed over to the awaiting task
            outcome = functools.partial(future.set_exception, exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=work, name="labyard-api", daemon=True).start()
    return await future


class ApiClient:
    """One server, one token (or none, to sign in)."""

    def __init__(self, server: str, token: str | None = None) -> None:
        self.server = server
        self._headers = {"accept": "application/json", "user-agent": "labyard-cli"}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._opener = urllib.request.build_opener(_NoRedirects())

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout: float = _TIMEOUT_S,
    ) -> Any:
        """The parsed JSON answer (None for 204 or an empty body), or the translated error."""
        return await _in_thread(lambda: self._call(method, path, body, timeout))

    def _call(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> Any:
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        request = urllib.request.Request(self.server + path, data, headers, method=method)
        try:
            with self._opener.open(request, timeout=timeout) as answer:
                content: bytes = answer.read()
        except urllib.error.HTTPError as exc:
            with exc:
                raise _error(self.server, exc, exc.read()) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc, timeout) from exc
        try:
            return json.loads(content) if content else None
        except ValueError as exc:
            raise LabyardError(
                f"{self.server} answered {method} {path} with something other than JSON; "
                "is it a labyard server?",
                detail=repr(content[:200]),
            ) from exc

    def _unreachable(self, exc: Exception, timeout: float) -> ServerUnreachable:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(cause, TimeoutError):
            message = f"{self.server} did not answer within {timeout:g} s"
        else:
            message = f"cannot reach {self.server}: {cause}"
        return ServerUnreachable(message, detail=repr(exc))

    async def close(self) -> None:
        """Nothing stays open between requests; kept so callers need not know."""
