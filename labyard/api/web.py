"""What HTML pages share: templates, the CSRF cookie for forms, and the static files.

xterm.js, uPlot and CodeMirror are not vendored into the repository: `npm ci`
(scripts/setup.sh) puts them in `node_modules/`, and the few folders the pages need are
served from there as they are (no build step).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from labyard.api.deps import CSRF_COOKIE
from labyard.errors import RuntimeFailure

HERE = Path(__file__).resolve().parent
NODE_MODULES = Path(os.environ.get("LABYARD_NODE_MODULES") or HERE.parents[1] / "node_modules")
"""Where `npm ci` put the browser packages (the repository root by default)."""

# URL prefix -> folder inside node_modules; only what the pages load is exposed.
VENDOR = {
    "/static/vendor/xterm/lib": "@xterm/xterm/lib",
    "/static/vendor/xterm/css": "@xterm/xterm/css",
    "/static/vendor/xterm-addon-fit": "@xterm/addon-fit/lib",
    "/static/vendor/xterm-addon-web-links": "@xterm/addon-web-links/lib",
    "/static/vendor/uplot": "uplot/dist",  # the analytics dashboard's charts
}

# The editor tab's CodeMirror 6: ES modules across several packages that import each other
# by bare name. Served unbundled: each package's folder is mounted, and the pages that edit
# carry an import map (`import_map`, from _import_map.html) resolving every name to its file.
ES_MODULES = {
    # specifier: (folder inside node_modules, entry file in it)
    "codemirror": ("codemirror/dist", "index.js"),
    "@codemirror/autocomplete": ("@codemirror/autocomplete/dist", "index.js"),
    "@codemirror/commands": ("@codemirror/commands/dist", "index.js"),
    "@codemirror/language": ("@codemirror/language/dist", "index.js"),
    "@codemirror/lint": ("@codemirror/lint/dist", "index.js"),
    "@codemirror/search": ("@codemirror/search/dist", "index.js"),
    "@codemirror/state": ("@codemirror/state/dist", "index.js"),
    "@codemirror/streamparser": ("@codemirror/streamparser/dist", "index.js"),
    "@codemirror/view": ("@codemirror/view/dist", "index.js"),
    "@lezer/common": ("@lezer/common/dist", "index.js"),
    "@lezer/highlight": ("@lezer/highlight/dist", "index.js"),
    "@lezer/lr": ("@lezer/lr/dist", "index.js"),
    "@marijn/find-cluster-break": ("@marijn/find-cluster-break/src", "index.js"),
    "crelt": ("crelt", "index.js"),
    "style-mod": ("style-mod/src", "style-mod.js"),
    "w3c-keyname": ("w3c-keyname", "index.js"),
}
VENDOR.update({f"/static/vendor/esm/{name}": folder for name, (folder, _) in ES_MODULES.items()})
IMPORT_MAP = {
    "imports": {
        name: f"/static/vendor/esm/{name}/{entry}" for name, (_, entry) in ES_MODULES.items()
    }
}
"""What `<script type="importmap">` holds on pages with an editor."""

templates = Jinja2Templates(directory=HERE / "templates")


def duration(seconds: int) -> str:
    """`12:05` or `1:02:03`: how countdowns read (static/app.js formats them the same)."""
    hours, rest = divmod(max(0, int(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def size(n: int) -> str:
    """Bytes as authors write them in manifests: `512 MiB`, `2 GiB`."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def number(x: float) -> str:
    """`2` for 2.0, `0.5` for 0.5."""
    return f"{x:g}"


templates.env.filters.update(duration=duration, size=size, number=number)
templates.env.globals["import_map"] = IMPORT_MAP


def mount_static(app: FastAPI) -> None:
    """Serve /static (our CSS/JS) and the xterm.js files; refuse to start without them,
    because every terminal page would be broken."""
    for prefix, folder in VENDOR.items():
        path = NODE_MODULES / folder
        if not path.is_dir():
            raise RuntimeFailure(
                f"the web terminal's files are missing ({path}); run scripts/setup.sh "
                "(or `npm ci` in the repository root)"
            )
        # More specific mounts first: /static would otherwise swallow /static/vendor/...
        app.mount(prefix, StaticFiles(directory=path), name=prefix)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def csrf_token(request: Request) -> str:
    """The CSRF token forms on this page carry: the browser's cookie, or a new one that
    `render` sets, so a sign-in form works before any session exists."""
    token: str | None = getattr(request.state, "csrf", None)
    if token is None:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        request.state.csrf = token
    return token


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    """A page from `template`; its context always has `user`, `csrf` and `request`."""
    csrf = csrf_token(request)
    values = {"user": getattr(request.state, "user", None), "csrf": csrf, **(context or {})}
    response = templates.TemplateResponse(request, template, values, status_code=status)
    if request.cookies.get(CSRF_COOKIE) != csrf:
        # Readable by our scripts (they copy it into X-CSRF-Token), never sent cross-site.
        response.set_cookie(
            CSRF_COOKIE, csrf, secure=request.url.scheme == "https", samesite="strict"
        )
    return response
