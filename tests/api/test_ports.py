"""Exposed ports on a live server (`server`): `/p/...` for the owner only, share links for
anyone until revoked, WebSocket pass-through, the subdomain form, and a browser that opens
both (share links on labyard's own origin run sandboxed).

In the machine: `python3 -m http.server` (a directory listing) and a small stdlib HTTP +
WebSocket echo server (below), each started with systemd-run. Every test here is synchronous:
the session's Playwright (sync API) keeps an event loop running on the main thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from labyard.api.app import create_app
from labyard.services import Labyard
from labyard.settings import Settings
from tests.api.conftest import Account, Server, browser_sign_up
from tests.conftest import IMAGES_DIR

ECHO_SERVER = r"""
import base64, hashlib, json, struct, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.headers.get("upgrade", "").lower() == "websocket":
            return self.websocket()
        self.reply({"method": "GET", "path": self.path, "headers": dict(self.headers)})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
        self.reply({"method": "POST", "path": self.path, "body": body})

    def reply(self, data):
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("set-cookie", "app=1; Path=/")
        self.send_header("set-cookie", "labyard_session=planted; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def websocket(self):
        key = (self.headers["sec-websocket-key"] + GUID).encode()
        self.send_response(101)
        self.send_header("upgrade", "websocket")
        self.send_header("connection", "Upgrade")
        accept = base64.b64encode(hashlib.sha1(key).digest()).decode()
        self.send_header("sec-websocket-accept", accept)
        self.end_headers()
        while (frame := self.read_frame()) is not None:
            opcode, data = frame
            if opcode == 8:
                return self.send_frame(8, data[:2])
            if opcode in (1, 2):
                self.send_frame(opcode, self.path.encode() + b" " + data)

    def read_frame(self):
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", self.rfile.read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self.rfile.read(8))[0]
        mask = self.rfile.read(4) if head[1] & 0x80 else bytes(4)
        return head[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))

    def send_frame(self, opcode, data):
        if len(data) < 126:
            header = struct.pack(">BB", 0x80 | opcode, len(data))
        else:
            header = struct.pack(">BBH", 0x80 | opcode, 126, len(data))
        self.wfile.write(header + data)
        self.wfile.flush()


ThreadingHTTPServer(("", int(sys.argv[1])), Echo).serve_forever()
"""

LISTING_PORT = 8080
ECHO_PORT = 8081
WS_TIMEOUT_S = 10.0


@dataclass
class Lab:
    owner: Account
    token: str
    playground_id: str

    def path(self, port: int, rest: str = "") -> str:
        return f"/p/{self.playground_id}/linux/{port}/{rest}"

    @property
    def bearer(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


def token_for(server: Server, account: Account) -> str:
    body = {"email": account.email, "password": account.password}
    response = httpx.post(f"{server.url}/api/tokens", json=body, timeout=30)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def run_in(account: Account, playground_id: str, command: str) -> dict[str, Any]:
    response = account.api(
        "POST", f"/api/playgrounds/{playground_id}/exec", json={"command": command}, timeout=90
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["exit_code"] == 0, result
    return result


def serve_in(account: Account, playground_id: str, unit: str, command: str, port: int) -> None:
    """Start a server in the machine and wait, under a deadline, until its port listens."""
    run_in(account, playground_id, f"systemd-run --unit {unit} {command}")
    run_in(
        account,
        playground_id,
        f"for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && exit 0; "
        "sleep 0.05; done; exit 1",
    )


def start_servers(account: Account, playground_id: str) -> None:
    run_in(account, playground_id, "mkdir -p /srv/www/docs && echo hi > /srv/www/hello.txt")
    run_in(account, playground_id, f"cat > /root/echo.py <<'EOF'\n{ECHO_SERVER}\nEOF")
    listing = f"python3 -m http.server {LISTING_PORT} --directory /srv/www"
    serve_in(account, playground_id, "listing", listing, LISTING_PORT)
    serve_in(account, playground_id, "echo", f"python3 /root/echo.py {ECHO_PORT}", ECHO_PORT)


@pytest.fixture(scope="module")
def lab(server: Server) -> Iterator[Lab]:
    owner = server.signup()
    playground = owner.start("linux")
    start_servers(owner, playground["id"])
    yield Lab(owner, token_for(server, owner), playground["id"])
    owner.destroy_all()


@pytest.fixture(scope="module")
def stranger(server: Server) -> Account:
    return server.signup()


def test_owner_gets_the_listing_with_cookie_or_token(server: Server, lab: Lab) -> None:
    by_cookie = lab.owner.client.get(lab.path(LISTING_PORT))
    assert by_cookie.status_code == 200
    assert "Directory listing" in by_cookie.text and "hello.txt" in by_cookie.text
    by_token = httpx.get(server.url + lab.path(LISTING_PORT, "hello.txt"), headers=lab.bearer)
    assert (by_token.status_code, by_token.text) == (200, "hi\n")
    assert "content-security-policy" not in by_token.headers


def test_others_and_anonymous_get_404(server: Server, lab: Lab, stranger: Account) -> None:
    url = server.url + lab.path(LISTING_PORT)
    assert stranger.client.get(url).status_code == 404
    other_token = {"authorization": f"Bearer {token_for(server, stranger)}"}
    assert httpx.get(url, headers=other_token).status_code == 404
    anonymous = httpx.get(url)
    assert anonymous.status_code == 404
    assert anonymous.json()["error"]["reason"] == "not_found"


def test_redirects_stay_below_the_prefix(server: Server, lab: Lab) -> None:
    bare = httpx.get(server.url + lab.path(LISTING_PORT).rstrip("/"), headers=lab.bearer)
    assert bare.status_code == 307
    assert bare.headers["location"].endswith(lab.path(LISTING_PORT))
    directory = httpx.get(server.url + lab.path(LISTING_PORT, "docs"), headers=lab.bearer)
    assert directory.status_code == 301
    assert directory.headers["location"] == lab.path(LISTING_PORT, "docs/")


def test_requests_pass_through_without_labyard_credentials(server: Server, lab: Lab) -> None:
    url = server.url + lab.path(ECHO_PORT, "a/b?q=1&r=%2F")
    headers = {**lab.bearer, "cookie": "labyard_csrf=x; theme=dark", "x-custom": "yes"}
    response = httpx.get(url, headers=headers)
    seen = response.json()
    assert seen["path"] == "/a/b?q=1&r=%2F"
    sent = {k.lower(): v for k, v in seen["headers"].items()}
    assert sent["cookie"] == "theme=dark"
    assert "authorization" not in sent
    assert sent["x-custom"] == "yes"
    assert sent["x-forwarded-prefix"] == lab.path(ECHO_PORT).rstrip("/")
    assert sent["x-forwarded-host"] == server.url.removeprefix("http://")
    assert sent["x-forwarded-proto"] == "http"
    # The machine may set its own cookies, never labyard's.
    assert response.headers.get_list("set-cookie") == ["app=1; Path=/"]
    posted = httpx.post(url, headers=lab.bearer, content=b"x" * 100_000).json()
    assert (posted["method"], len(posted["body"])) == ("POST", 100_000)


def test_nothing_listening_is_502(server: Server, lab: Lab) -> None:
    response = httpx.get(server.url + lab.path(9), headers=lab.bearer, timeout=30)
    assert response.status_code == 502
    assert "port 9" in response.json()["error"]["message"]


@pytest.mark.parametrize("port", ["80.0", "+8080", "080", "0", "65536", "9" * 30, "http"])
def test_a_port_that_is_no_port_is_404_with_a_reason(server: Server, lab: Lab, port: str) -> None:
    url = f"{server.url}/p/{lab.playground_id}/linux/{port}/"
    response = httpx.get(url, headers=lab.bearer, timeout=30)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["reason"] == "bad_port" and "is not a TCP port (1-65535)" in error["message"]
    # The same request with the port written as a port reaches it.
    control = httpx.get(server.url + lab.path(LISTING_PORT), headers=lab.bearer, timeout=30)
    assert control.status_code == 200


def test_websocket_passes_through(server: Server, lab: Lab) -> None:
    url = server.ws_url + lab.path(ECHO_PORT, "chat?room=1")
    with connect(url, additional_headers=lab.bearer, open_timeout=WS_TIMEOUT_S) as ws:
        ws.send("hello")
        assert ws.recv(WS_TIMEOUT_S) == "/chat?room=1 hello"
        ws.send(b"\x00\xff")
        assert ws.recv(WS_TIMEOUT_S) == b"/chat?room=1 \x00\xff"
    with (
        connect(url, open_timeout=WS_TIMEOUT_S) as anonymous,
        pytest.raises(ConnectionClosed) as closed,
    ):
        anonymous.recv(WS_TIMEOUT_S)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


def create_share(server: Server, lab: Lab, port: int) -> dict[str, Any]:
    body = {"machine": "linux", "port": port}
    response = httpx.post(
        f"{server.url}/api/playgrounds/{lab.playground_id}/shares", json=body, headers=lab.bearer
    )
    assert response.status_code == 201, response.text
    share: dict[str, Any] = response.json()
    return share


def test_share_link_works_anonymously_until_revoked(
    server: Server, lab: Lab, stranger: Account
) -> None:
    share = create_share(server, lab, LISTING_PORT)
    assert share["url"] == f"{server.url}/s/{share['token']}/"
    anonymous = httpx.get(share["url"])
    assert anonymous.status_code == 200 and "hello.txt" in anonymous.text
    assert anonymous.headers["content-security-policy"].startswith("sandbox ")
    listed = lab.owner.api("GET", f"/api/playgrounds/{lab.playground_id}/shares").json()
    assert [s["token"] for s in listed] == [share["token"]]
    shares = f"/api/playgrounds/{lab.playground_id}/shares"
    assert stranger.api("GET", shares).status_code == 404
    assert stranger.api("POST", shares, json={"machine": "linux", "port": 22}).status_code == 404
    assert stranger.api("DELETE", f"{shares}/{share['token']}").status_code == 404
    revoked = lab.owner.api("DELETE", f"{shares}/{share['token']}")
    assert revoked.status_code == 204
    assert httpx.get(share["url"]).status_code == 404


def test_share_link_carries_websockets(server: Server, lab: Lab) -> None:
    share = create_share(server, lab, ECHO_PORT)
    url = "ws" + share["url"].removeprefix("http") + "live"
    with connect(url, open_timeout=WS_TIMEOUT_S) as ws:
        ws.send("ping")
        assert ws.recv(WS_TIMEOUT_S) == "/live ping"


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """`app` on a free port of this host, in a thread with its own event loop."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)  # polling a condition under a deadline
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_subdomain_mode_routes_by_host_name(server: Server, lab: Lab) -> None:
    settings = Settings(
        data_dir=server.data_dir,
        images_dir=IMAGES_DIR,
        database_url=f"sqlite:///{server.data_dir}/labyard.db",
        ports_domain="labs.test",
    )
    labyard = Labyard(settings)
    host = f"{LISTING_PORT}-linux-{lab.playground_id}.labs.test"
    share = create_share(server, lab, ECHO_PORT)
    try:
        with serving(create_app(labyard, reconcile_interval_s=None)) as url:

            def get(host: str, path: str, **headers: str) -> httpx.Response:
                return httpx.get(url + path, headers={"host": host, **headers}, timeout=30)

            owner = get(host, "/hello.txt", **lab.bearer)
            assert (owner.status_code, owner.text) == (200, "hi\n")
            assert get(host, "/").status_code == 404
            assert get(host, "/docs", **lab.bearer).headers["location"] == "/docs/"
            shared = get(f"s-{share['token']}.labs.test", "/x")
            assert shared.json()["path"] == "/x"
            assert "content-security-policy" not in shared.headers  # an origin of its own
            assert get("nonsense.labs.test", "/").status_code == 404
            assert get("labs.test", "/healthz").status_code == 200
            created = httpx.post(
                f"{url}/api/playgrounds/{lab.playground_id}/shares",
                json={"machine": "linux", "port": LISTING_PORT},
                headers={"host": "labs.test", **lab.bearer},
            )
            assert created.json()["url"].startswith("http://s-")
    finally:
        labyard.close()


def test_browser_opens_private_port_and_sandboxed_share(server: Server, browser: Any) -> None:
    context = browser.new_context()
    anonymous = browser.new_context()
    page = context.new_page()
    playground_id = ""
    try:
        browser_sign_up(page, server)
        csrf = {c["name"]: c["value"] for c in context.cookies()}["labyard_csrf"]
        headers = {"X-CSRF-Token": csrf}
        started = page.request.post(
            f"{server.url}/api/playgrounds",
            data={"name": "linux"},
            headers=headers,
            timeout=120_000,
        )
        assert started.status == 201, started.text()
        playground_id = started.json()["id"]
        command = "mkdir -p /srv/www && echo '<h1>from the machine</h1>' > /srv/www/index.html"
        command += f" && systemd-run --unit web python3 -m http.server {LISTING_PORT}"
        command += " --directory /srv/www"
        command += f" && for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/{LISTING_PORT})"
        command += " 2>/dev/null && exit 0; sleep 0.05; done; exit 1"
        ran = page.request.post(
            f"{server.url}/api/playgrounds/{playground_id}/exec",
            data={"command": command},
            headers=headers,
            timeout=90_000,
        )
        assert ran.json()["exit_code"] == 0, ran.text()
        page.goto(f"{server.url}/p/{playground_id}/linux/{LISTING_PORT}/")
        assert page.locator("h1").inner_text() == "from the machine"
        shared = page.request.post(
            f"{server.url}/api/playgrounds/{playground_id}/shares",
            data={"machine": "linux", "port": LISTING_PORT},
            headers=headers,
        )
        visitor = anonymous.new_page()
        visitor.goto(shared.json()["url"])
        assert visitor.locator("h1").inner_text() == "from the machine"
        # Sandboxed: the page's scripts cannot act as labyard on labyard's origin.
        cookie = "() => { try { return document.cookie } catch (e) { return 'blocked' } }"
        assert visitor.evaluate(cookie) == "blocked"
    finally:
        if playground_id:
            page.request.delete(
                f"{server.url}/api/playgrounds/{playground_id}", headers=headers, timeout=60_000
            )
        context.close()
        anonymous.close()
