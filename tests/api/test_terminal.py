"""The terminal WebSocket against a real server and a real `linux` playground: commands run,
a reconnect finds the same shell, resize and UTF-8 work, strangers are refused."""

from __future__ import annotations

import asyncio
import codecs
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from labyard.api.terminals import HIGH_WATER
from tests.api.conftest import Account, Server

DEADLINE_S = 20.0
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\x1b[=>]|\x1b\][^\x07]*\x07")


@pytest.fixture(scope="module")
def owner(server: Server) -> Iterator[Account]:
    account = server.signup()
    yield account
    account.destroy_all()


@pytest.fixture(scope="module")
def playground(owner: Account) -> dict[str, Any]:
    return owner.start("linux")


class Screen:
    """Everything a terminal connection received, decoded as a terminal would."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.text = ""
        self.bytes_in = 0
        self.messages: list[dict[str, Any]] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    async def until(self, pattern: str, since: int = 0, deadline: float = DEADLINE_S) -> str:
        """Read until `pattern` (regex) shows up in the output after offset `since`,
        escape sequences removed; fail with what arrived if it does not within `deadline`."""
        try:
            async with asyncio.timeout(deadline):
                while not (found := re.search(pattern, ANSI.sub("", self.text[since:]))):
                    await self.receive()
        except TimeoutError:
            pytest.fail(f"no {pattern!r} within {deadline} s; got:\n{self.text[since:]!r}")
        return found.group(0)

    async def receive(self) -> None:
        frame = await self.ws.recv()
        if isinstance(frame, bytes):
            self.bytes_in += len(frame)
            self.text += self._decoder.decode(frame)
        else:
            self.messages.append(json.loads(frame))

    async def run(self, command: str, expect: str) -> str:
        """Type `command` + Enter and wait for `expect` in what follows."""
        mark = len(self.text)
        await self.ws.send(f"{command}\r".encode())
        return await self.until(expect, since=mark)


def _url(server: Server, playground_id: str, machine: str = "linux", **query: Any) -> str:
    params = urlencode(query)
    return f"{server.ws_url}/api/playgrounds/{playground_id}/machines/{machine}/terminal?{params}"


@pytest.fixture
async def attach(server: Server) -> AsyncIterator[Any]:
    """`await attach(account, playground_id, tab=..., ...)` -> a Screen on an open socket."""
    opened: list[ClientConnection] = []

    async def open_screen(account: Account, playground_id: str, **query: Any) -> Screen:
        cookie = "; ".join(f"{k}={v}" for k, v in account.cookies.items())
        ws = await connect(
            _url(server, playground_id, **query), additional_headers={"Cookie": cookie}
        )
        opened.append(ws)
        return Screen(ws)

    yield open_screen
    for ws in opened:
        await ws.close()


async def _refusal(url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """The (close code, error message) a refused terminal connection ends with."""
    async with connect(url, **kwargs) as ws:
        message = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE_S))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), DEADLINE_S)
    assert ws.close_code is not None
    return ws.close_code, message


async def test_command_runs_and_reconnect_finds_the_same_shell(
    attach: Any, owner: Account, playground: dict[str, Any]
) -> None:
    screen = await attach(owner, playground["id"], tab="persist", cols=120, rows=40)
    await screen.until(r"root@\S+:~# ")
    await screen.run("echo $((6*7))", r"\b42\b")
    pid = await screen.run("echo pid=$$", r"pid=\d+")
    await screen.ws.close()

    again = await attach(owner, playground["id"], tab="persist", cols=120, rows=40)
    # The replayed history / redrawn screen shows the earlier command ...
    await again.until(re.escape("echo $((6*7))"))
    # ... and it is the same shell process, with the command in its history.
    await again.run("echo pid=$$", re.escape(pid))
    await again.run("history | tail -5", re.escape("echo $((6*7))"))


async def test_resize_changes_the_terminal_size(
    attach: Any, owner: Account, playground: dict[str, Any]
) -> None:
    screen = await attach(owner, playground["id"], tab="resize", cols=80, rows=24)
    await screen.run("stty size", r"\b24 80\b")
    await screen.ws.send(json.dumps({"type": "resize", "cols": 101, "rows": 31}))
    await screen.run("stty size", r"\b31 101\b")


async def test_utf8_round_trip(attach: Any, owner: Account, playground: dict[str, Any]) -> None:
    screen = await attach(owner, playground["id"], tab="utf8")
    # `wc -c` proves the shell got the bytes: h é(2) l l o space ✓(3) newline = 11.
    await screen.run("echo héllo ✓ | tee /dev/stderr | wc -c", r"héllo ✓\s+11\b")


async def test_exit_ends_the_tab_with_its_code(
    attach: Any, owner: Account, playground: dict[str, Any]
) -> None:
    screen = await attach(owner, playground["id"], tab="leaving")
    await screen.until(r"root@\S+:~# ")
    await screen.ws.send(b"exit\r")
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(DEADLINE_S):
            while True:
                await screen.receive()
    assert {"type": "exit", "code": 0} in screen.messages
    assert screen.ws.close_code == 1000


async def test_a_client_that_acks_gets_a_bounded_window(
    attach: Any, owner: Account, playground: dict[str, Any]
) -> None:
    screen = await attach(owner, playground["id"], tab="flood", cols=200, rows=50)
    await screen.until(r"root@\S+:~# ")
    await screen.ws.send(json.dumps({"type": "ack", "bytes": 0}))  # this client acks
    await screen.ws.send(b'yes "$(printf %0150d 42)"\r')  # endless wide lines
    async with asyncio.timeout(60):
        while screen.bytes_in < HIGH_WATER:
            await screen.receive()
    # Nothing acknowledged: the server stops at HIGH_WATER plus at most one read in flight,
    # however long the producer keeps going.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2):
            while True:
                await screen.receive()
    assert screen.bytes_in < HIGH_WATER + 256 * 1024
    # Input still flows while output is held back: Ctrl-C stops `yes` ...
    mark = len(screen.text)
    await screen.ws.send(b"\x03")
    # ... and once the client catches up, the rest (and the prompt) arrives.
    acker = asyncio.create_task(_ack_forever(screen))
    try:
        await screen.run("echo flood-$((1+1))", "flood-2")
        assert "^C" in screen.text[mark:]
    finally:
        acker.cancel()


async def _ack_forever(screen: Screen) -> None:
    acked = 0
    while True:
        await screen.ws.send(json.dumps({"type": "ack", "bytes": screen.bytes_in - acked}))
        acked = screen.bytes_in
        await asyncio.sleep(0.01)  # acks go out while the reader renders; not a wait


async def test_terminal_gauge_counts_open_terminals(
    server: Server, attach: Any, owner: Account, playground: dict[str, Any]
) -> None:
    screen = await attach(owner, playground["id"], tab="gauge")
    await screen.until(r"root@\S+:~# ")
    assert _gauge(server) >= 1
    await screen.ws.close()
    async with asyncio.timeout(DEADLINE_S):
        while _gauge(server) != 0:
            await asyncio.sleep(0.05)  # polling a condition under a deadline


def _gauge(server: Server) -> float:
    metrics = httpx.get(f"{server.url}/metrics").text
    found = re.search(r"^labyard_terminals_open (\S+)$", metrics, re.M)
    assert found, metrics
    return float(found.group(1))


async def test_strangers_are_refused(
    server: Server, owner: Account, playground: dict[str, Any]
) -> None:
    stranger = server.signup()
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in stranger.cookies.items())}
    code, message = await _refusal(_url(server, playground["id"]), additional_headers=cookie)
    assert (code, message["reason"]) == (4404, "not_found")

    owner_cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in owner.cookies.items())}
    code, _ = await _refusal(
        _url(server, playground["id"], "nosuch"), additional_headers=owner_cookie
    )
    assert code == 4404
    code, _ = await _refusal(_url(server, playground["id"]))
    assert code == 4401
    # A page on another site cannot use the owner's cookie ...
    code, _ = await _refusal(
        _url(server, playground["id"]),
        additional_headers=owner_cookie,
        origin="http://evil.example",
    )
    assert code == 4403
    # ... and a bad parameter says so.
    code, _ = await _refusal(
        _url(server, playground["id"], tab="a b"), additional_headers=owner_cookie
    )
    assert code == 4422


async def test_api_token_in_query_works_for_non_browsers(
    server: Server, attach: Any, owner: Account, playground: dict[str, Any]
) -> None:
    response = httpx.post(
        f"{server.url}/api/tokens", json={"email": owner.email, "password": owner.password}
    )
    token = response.json()["token"]
    async with connect(_url(server, playground["id"], token=token, tab="token")) as ws:
        screen = Screen(ws)
        await screen.run("echo token-$((40+2))", "token-42")
