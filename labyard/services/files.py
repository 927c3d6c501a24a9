"""The editor tab's file operations on a playground's machine, over SFTP, as one of its users.

The user is the one the terminal uses (root), unless the caller names another one of the
machine's users (a task's or manifest's `user`): the SFTP server then runs as that user, so
the machine's own permissions decide what may be read or written. Nothing here can reach
outside the machine: paths are resolved by the machine's kernel (access/files.py).

Policy lives here: how big a file the editor opens or saves (`MAX_EDIT_BYTES`), and that
only text is edited (binary files are refused with a message, not mangled).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from labyard.access.files import MachineFiles
from labyard.errors import InvalidInput
from labyard.services.playgrounds import Playgrounds

MAX_EDIT_BYTES = 2 * 1024 * 1024
"""The largest file the editor opens or saves: bigger ones are for `labyard cp`."""
MAX_PATH = 4096
USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
DEFAULT_USER = "root"
"""The terminal's user: what the editor acts as unless told otherwise."""


def check_path(path: str | None, what: str = "path") -> str:
    """A path the machine may resolve: relative ones are from the user's home."""
    if not path:
        raise InvalidInput(f"{what} is empty")
    if len(path) > MAX_PATH or "\x00" in path:
        raise InvalidInput(f"{what} must be at most {MAX_PATH} characters, without NUL")
    return path


def check_user(user: str | None) -> str:
    user = user or DEFAULT_USER
    if not USER_NAME.fullmatch(user):
        raise InvalidInput(f"user {user[:40]!r} is not a Linux user name")
    return user


def text_of(path: str, data: bytes) -> str:
    """The file's text, or InvalidInput when it is too big or not text (NUL bytes, or not
    UTF-8): the editor would corrupt it."""
    if len(data) > MAX_EDIT_BYTES:
        raise InvalidInput(
            f"{path} is larger than {MAX_EDIT_BYTES // (1024 * 1024)} MiB: too big to edit "
            "here (copy it with `labyard cp`)",
            reason="file_too_large",
        )
    if b"\x00" in data:
        raise InvalidInput(f"{path} is a binary file: it cannot be edited as text", reason="binary")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"{path} is not UTF-8 text: it cannot be edited here", reason="binary"
        ) from None


class Files:
    def __init__(self, playgrounds: Playgrounds) -> None:
        self.playgrounds = playgrounds

    def _owned(self, playground_id: str, machine: str, owner: str) -> None:
        """NotFound unless the playground is `owner`'s and has `machine`: before anything
        about the request itself is judged, so strangers learn nothing (404 only)."""
        self.playgrounds.target(playground_id, machine, owner)

    @contextlib.asynccontextmanager
    async def _session(
        self, playground_id: str, machine: str, owner: str, user: str
    ) -> AsyncIterator[MachineFiles]:
        """NotFound unless the playground is `owner`'s; Conflict unless it runs."""
        async with (
            await self.playgrounds.connect(playground_id, machine, owner) as connection,
            connection.files(user) as files,
        ):
            yield files

    async def listing(
        self, playground_id: str, machine: str, owner: str, path: str | None, user: str | None
    ) -> dict[str, Any]:
        """A directory's entries ({path, user, entries}); the user's home by default."""
        self._owned(playground_id, machine, owner)
        user = check_user(user)
        async with self._session(playground_id, machine, owner, user) as files:
            where = check_path(path) if path else await files.home()
            entries = await files.list(where)
        return {"path": where, "user": user, "entries": [asdict(e) for e in entries]}

    async def read(
        self, playground_id: str, machine: str, owner: str, path: str | None, user: str | None
    ) -> dict[str, Any]:
        """A text file's content ({path, user, content, size})."""
        self._owned(playground_id, machine, owner)
        user, path = check_user(user), check_path(path)
        async with self._session(playground_id, machine, owner, user) as files:
            kind, _ = await files.kind(path)
            if kind != "file":
                raise InvalidInput(f"{path} is a {kind}, not a file", reason="not_a_file")
            data = await files.read(path, MAX_EDIT_BYTES)
        content = text_of(path, data)
        return {"path": path, "user": user, "content": content, "size": len(data)}

    async def write(
        self,
        playground_id: str,
        machine: str,
        owner: str,
        path: str,
        content: str,
        user: str | None,
    ) -> dict[str, Any]:
        """Save a text file (created if missing; an existing one keeps owner and mode)."""
        self._owned(playground_id, machine, owner)
        user, path = check_user(user), check_path(path)
        data = content.encode("utf-8")
        if len(data) > MAX_EDIT_BYTES:
            raise InvalidInput(
                f"the content for {path} is larger than {MAX_EDIT_BYTES // (1024 * 1024)} MiB",
                reason="file_too_large",
            )
        async with self._session(playground_id, machine, owner, user) as files:
            await files.write(path, data)
        return {"path": path, "user": user, "size": len(data)}

    async def create(
        self,
        playground_id: str,
        machine: str,
        owner: str,
        path: str,
        directory: bool,
        user: str | None,
    ) -> dict[str, Any]:
        self._owned(playground_id, machine, owner)
        user, path = check_user(user), check_path(path)
        async with self._session(playground_id, machine, owner, user) as files:
            await files.create(path, directory)
        return {"path": path, "user": user, "kind": "directory" if directory else "file"}

    async def rename(
        self, playground_id: str, machine: str, owner: str, path: str, to: str, user: str | None
    ) -> dict[str, Any]:
        self._owned(playground_id, machine, owner)
        user, path, to = check_user(user), check_path(path), check_path(to, "to")
        async with self._session(playground_id, machine, owner, user) as files:
            await files.rename(path, to)
        return {"path": to, "user": user}

    async def delete(
        self, playground_id: str, machine: str, owner: str, path: str | None, user: str | None
    ) -> None:
        self._owned(playground_id, machine, owner)
        user, path = check_user(user), check_path(path)
        async with self._session(playground_id, machine, owner, user) as files:
            await files.delete(path)
