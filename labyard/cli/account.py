"""`labyard login` and `labyard logout`: an API token for a labyard server."""

from __future__ import annotations

import getpass
import os
import socket
import sys
from typing import Any

import typer

from labyard.cli import credentials
from labyard.cli._common import err
from labyard.cli.backend import server_option
from labyard.errors import InvalidInput, Unauthenticated


def _password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


def _server(option: str | None) -> str:
    url = option or server_option() or os.environ.get("LABYARD_SERVER")
    if not url:
        raise InvalidInput("which server? give --server URL")
    return credentials.server_url(url)


def _call(server: str, token: str | None, path: str, body: dict[str, Any] | None) -> Any:
    """POST `body` to the server; its JSON answer. (The HTTP client loads only here.)"""
    import asyncio

    from labyard.cli._client import ApiClient

    async def call() -> Any:
        api = ApiClient(server, token)
        try:
            return await api.call("POST", path, body)
        finally:
            await api.close()

    return asyncio.run(call())


def login(
    server: str = typer.Option(None, "--server", help="The server, e.g. https://labs.example.com"),
    email: str = typer.Option(..., "--email", help="Your account's email address."),
) -> None:
    """Sign in to a labyard server; commands then act there.

    The password is read from stdin when it is not a terminal.
    """
    url = _server(server)
    password = _password()
    if not password:
        raise InvalidInput("no password given")
    name = f"cli@{socket.gethostname()}"[:100]
    body = {"email": email, "password": password, "name": name}
    answer = _call(url, None, "/api/tokens", body)
    path = credentials.save(credentials.Login(url, str(answer["token"]), email))
    err.print(f"signed in to {url} as {email} (token in {path})")


def logout() -> None:
    """Revoke this CLI's token on the server and forget it (and the keys for OpenSSH)."""
    from labyard.cli._client import ServerUnreachable

    stored = credentials.load()
    if stored is None:
        err.print("not signed in")
        return
    try:
        _call(stored.server, stored.token, "/api/logout", None)
    except Unauthenticated:
        pass  # revoked already
    except ServerUnreachable as exc:
        credentials.forget()
        raise ServerUnreachable(
            f"{exc.message}; the token was forgotten here but is not revoked"
        ) from exc
    credentials.forget()
    err.print(f"signed out of {stored.server}")
