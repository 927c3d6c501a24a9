"""The server's JSON API from the CLI: requests with the API token, errors translated.

An error answer becomes the labyard error the server raised (same message, same exit code:
422 -> 2, 404 -> 3, 409/429 -> 4, 502/503 -> 5, 401 -> 6); httpx errors never escape.
"""

from __future__ import annotations

from typing import Any

import httpx

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


def _error(response: httpx.Response) -> LabyardError:
    try:
        error = response.json()["error"]
        message, reason = str(error["message"]), str(error["reason"])
    except (ValueError, KeyError, TypeError):
        message, reason = f"the server answered {response.status_code}", None
    return error_for(response.status_code, message, reason)


class ApiClient:
    """One server, one token (or none, to sign in)."""

    def __init__(self, server: str, token: str | None = None) -> None:
        self.server = server
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=server, headers=headers, timeout=_TIMEOUT_S)

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout: float = _TIMEOUT_S,
    ) -> Any:
        """The parsed JSON answer (None for 204), or the translated error."""
        try:
            response = await self._http.request(method, path, json=body, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(
                f"{self.server} did not answer within {timeout:g} s", detail=repr(exc)
            ) from exc
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"cannot reach {self.server}: {exc}", detail=repr(exc)) from exc
        if response.is_error:
            raise _error(response)
        return None if response.status_code == 204 or not response.content else response.json()

    async def close(self) -> None:
        await self._http.aclose()
