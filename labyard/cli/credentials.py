"""Which server the CLI talks to, and with which API token.

`labyard login` stores `{server, token, email}` in `credentials.json` (mode 0600) in the
config directory: `$LABYARD_CONFIG`, else `$XDG_CONFIG_HOME/labyard`, else
`~/.config/labyard`. `--server URL` or `LABYARD_SERVER` (with `LABYARD_TOKEN`, or the stored
token when it is for that server) pick a server without logging in; with none of these,
commands act on the local instance.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from labyard.errors import InvalidInput, Unauthenticated


@dataclass(frozen=True)
class Login:
    server: str
    token: str
    email: str = ""


def config_dir() -> Path:
    if override := os.environ.get("LABYARD_CONFIG"):
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "labyard"


def keys_dir() -> Path:
    """Where `labyard ssh-config` writes playground keys for OpenSSH."""
    return config_dir() / "keys"


def _file() -> Path:
    return config_dir() / "credentials.json"


def server_url(text: str) -> str:
    """`text` as a base URL without a trailing slash; only http(s) URLs are accepted."""
    url = text.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"{text!r}: give the server as http(s)://host[:port]")
    return url


def load() -> Login | None:
    """The stored login, if any."""
    try:
        data = json.loads(_file().read_text())
        return Login(server_url(data["server"]), str(data["token"]), str(data.get("email", "")))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, InvalidInput) as exc:
        raise InvalidInput(f"{_file()} is damaged ({exc}); run `labyard logout`") from exc


def save(login: Login) -> Path:
    """Store `login`, readable by this user only (written whole, then renamed into place)."""
    path = _file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        json.dump(asdict(login), file, indent=2)
    temporary.replace(path)
    return path


def forget() -> None:
    """Remove the stored login and the playground keys written for OpenSSH."""
    _file().unlink(missing_ok=True)
    shutil.rmtree(keys_dir(), ignore_errors=True)


def current(server_option: str | None) -> Login | None:
    """The server to act on and its token, or None for the local instance."""
    stored = load()
    server = server_option or os.environ.get("LABYARD_SERVER") or None
    token = os.environ.get("LABYARD_TOKEN") or None
    if server is None:
        if token is not None and stored is None:
            raise InvalidInput("LABYARD_TOKEN needs LABYARD_SERVER (or --server URL)")
        if stored is not None:
            return Login(stored.server, token or stored.token, stored.email)
        return None
    server = server_url(server)
    if token is None and stored is not None and stored.server == server:
        return stored
    if token is None:
        raise Unauthenticated(f"not signed in to {server}; run `labyard login --server {server}`")
    return Login(server, token)
