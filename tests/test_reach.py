"""The rule that the control plane reaches machines only through the runtime driver and SSH:
no module outside labyard/runtime and labyard/access opens a network connection of its own
(a machine's sshd is the driver's `dial`; every other port rides on SSH). Checked on the
source, so a new module that dials a machine address fails here before it ships."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "labyard"
ALLOWED_DIRS = ("runtime", "access")
CONNECTING = {"open_connection", "create_connection", "sock_connect", "connect_tcp"}
"""Calls that open a stream connection; `open_connection(sock=...)` only wraps one."""
ALLOWED = {
    ("cli/_pipes.py", "connect"): "the remote CLI's WebSocket to the labyard server itself",
}


def connections_opened(source: str, path: str) -> list[str]:
    """`path:line call` for each call in `source` that opens a connection of its own."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
        keywords = {k.arg for k in node.keywords}
        opens = name in CONNECTING and (bool(node.args) or "sock" not in keywords)
        opens |= owner == "socket" and name in ("socket", "create_connection")
        opens |= owner == "websockets" and name == "connect" and "sock" not in keywords
        if opens and (path, name) not in ALLOWED:
            found.append(f"{path}:{node.lineno} {owner + '.' if owner else ''}{name}")
    return found


def test_only_the_runtime_and_access_open_connections_to_machines() -> None:
    found = []
    for module in sorted(PACKAGE.rglob("*.py")):
        relative = module.relative_to(PACKAGE).as_posix()
        if relative.split("/")[0] not in ALLOWED_DIRS:
            found += connections_opened(module.read_text(), relative)
    assert found == []


def test_the_check_sees_a_module_that_dials_an_address() -> None:
    bad = (
        "async def f(address):\n"
        "    await asyncio.open_connection(address, 22)\n"
        "    await websockets.connect(f'ws://{address}:80/')\n"
        "    socket.create_connection((address, 80))\n"
    )
    assert len(connections_opened(bad, "api/x.py")) == 3
    fine = "async def f(sock):\n    await asyncio.open_connection(sock=sock)\n"
    assert connections_opened(fine, "api/x.py") == []
