"""A machine's files over SFTP, as one of its users: list, read, write, create, rename, delete.

The SFTP server runs inside the machine, as `user`: root's is sshd's own `sftp` subsystem;
another user's is the same `sftp-server` binary started with `runuser`, its protocol spoken
over the exec channel. So every path is resolved by the machine's kernel, with that user's
permissions: `..` and symlinks lead wherever they lead inside the machine, never out of it.

SFTP status codes become labyard errors here (no asyncssh exception leaves this module):
no such file is `NotFound`, permission denied `Forbidden`, "already exists" or "not empty"
`Conflict`; anything else `AccessFailure`, naming the path and the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncssh
from asyncssh.sftp import start_sftp_client

from labyard.access._errors import describe, translated
from labyard.errors import AccessFailure, Conflict, Forbidden, LabyardError, NotFound

# Where Debian, Fedora/RHEL and Alpine/Arch put OpenSSH's sftp-server.
_SFTP_SERVERS = (
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/sftp-server",
)
NO_SUCH_USER = 67
"""The exit code of the launcher when `user` does not exist in the machine."""


@dataclass(frozen=True)
class Entry:
    """One directory entry (a symlink is reported as such, with what it points to)."""

    name: str
    kind: str
    """`file`, `directory`, `symlink` or `other`."""
    size: int
    mode: int
    """Permission bits (`0o644`)."""
    mtime: int
    target: str | None = None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _launcher(user: str) -> str:
    """Shell that execs sftp-server as `user` (stdout is the protocol: nothing else on it)."""
    servers = " ".join(_SFTP_SERVERS)
    quoted = shlex.quote(user)
    return (
        f"id -u {quoted} >/dev/null 2>&1 || exit {NO_SUCH_USER}; "
        f'for s in {servers}; do [ -x "$s" ] && exec runuser -u {quoted} -- "$s"; done; '
        "echo 'no sftp-server in this machine' >&2; exit 127"
    )


def _sftp_error(exc: asyncssh.SFTPError, path: str, where: str, action: str) -> LabyardError:
    message = f"could not {action} {path} on {where}: {exc.reason}"
    detail = describe(exc)
    if exc.code in (asyncssh.FX_NO_SUCH_FILE, asyncssh.FX_NO_SUCH_PATH):
        return NotFound(f"{path}: no such file or directory on {where}", detail=detail)
    if exc.code == asyncssh.FX_PERMISSION_DENIED:
        return Forbidden(
            f"permission denied: cannot {action} {path} on {where}",
            detail=detail,
            reason="permission_denied",
        )
    if exc.code in (asyncssh.FX_FILE_ALREADY_EXISTS, asyncssh.FX_DIR_NOT_EMPTY):
        return Conflict(message, detail=detail)
    return AccessFailure(message, detail=detail, reason="file_operation_failed")


class MachineFiles:
    """An SFTP session in one machine as one user; every method names the path it acts on."""

    def __init__(self, sftp: asyncssh.SFTPClient, where: str, user: str) -> None:
        self._sftp = sftp
        self.where = where
        self.user = user

    @contextlib.contextmanager
    def _doing(self, action: str, path: str) -> Iterator[None]:
        try:
            with translated(self.where, f"{action} {path}"):
                yield
        except AccessFailure as exc:
            cause = exc.__cause__
            if isinstance(cause, asyncssh.SFTPError):
                raise _sftp_error(cause, path, self.where, action) from cause
            raise

    async def home(self) -> str:
        """The user's home directory (where SFTP sessions start)."""
        with self._doing("resolve", "~"):
            return str(await self._sftp.realpath("."))

    async def kind(self, path: str) -> tuple[str, int]:
        """(kind, size) of `path`, following symlinks."""
        with self._doing("open", path):
            attrs = await self._sftp.stat(path)
        return _kind(attrs.permissions or 0), attrs.size or 0

    async def list(self, path: str) -> list[Entry]:
        """A directory's entries (not `.` and `..`), by name."""
        entries: list[Entry] = []
        with self._doing("list", path):
            async for name in self._sftp.scandir(path):
                if name.filename in (".", ".."):
                    continue
                attrs = name.attrs
                mode = attrs.permissions or 0
                target = None
                if stat.S_ISLNK(mode):
                    with contextlib.suppress(asyncssh.SFTPError):
                        target = str(await self._sftp.readlink(f"{path}/{name.filename!s}"))
                entries.append(
                    Entry(
                        str(name.filename),
                        _kind(mode),
                        attrs.size or 0,
                        stat.S_IMODE(mode),
                        int(attrs.mtime or 0),
                        target,
                    )
                )
        return sorted(entries, key=lambda e: e.name)

    async def read(self, path: str, limit: int) -> bytes:
        """Up to `limit` + 1 bytes of a file (one more than allowed tells it is too big)."""
        with self._doing("read", path):
            async with self._sftp.open(path, "rb") as file:
                data: bytes = await file.read(limit + 1)
        return data

    async def write(self, path: str, data: bytes) -> None:
        """Replace a file's content (created if missing, 0644 under umask 022; an existing file
        keeps its owner and mode)."""
        with self._doing("write", path):
            async with self._sftp.open(path, "wb") as file:
                await file.write(data)

    async def create(self, path: str, directory: bool) -> None:
        """A new empty file or directory; Conflict if something is there already."""
        with self._doing("create", path):
            if await self._sftp.exists(path):  # SFTP v3 says only "Failure" for EEXIST
                raise Conflict(f"{path} exists already on {self.where}")
            if directory:
                await self._sftp.mkdir(path)
                return
            flags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
            async with self._sftp.open(path, flags):
                pass

    async def rename(self, path: str, to: str) -> None:
        """Move `path` to `to`; Conflict if `to` exists (nothing is overwritten)."""
        with self._doing("rename", path):
            if await self._sftp.exists(to):
                raise Conflict(f"{to} exists already on {self.where}: nothing was renamed")
            await self._sftp.rename(path, to)

    async def delete(self, path: str) -> None:
        """Remove a file, a symlink or an empty directory."""
        with self._doing("delete", path):
            attrs = await self._sftp.lstat(path)
            if stat.S_ISDIR(attrs.permissions or 0):
                if [n for n in await self._sftp.listdir(path) if n not in (".", "..")]:
                    raise Conflict(f"{path} on {self.where} is a directory that is not empty")
                await self._sftp.rmdir(path)
            else:
                await self._sftp.remove(path)


@contextlib.asynccontextmanager
async def open_files(
    conn: asyncssh.SSHClientConnection, where: str, login: str, user: str
) -> AsyncIterator[MachineFiles]:
    """An SFTP session as `user` over `conn` (logged in as `login`)."""
    with translated(where, "start a file session"):
        if user == login:
            sftp = await conn.start_sftp_client(path_errors="replace")
        else:
            process = await conn.create_process(_launcher(user), encoding=None)
            try:
                sftp = await start_sftp_client(
                    conn,
                    asyncio.get_running_loop(),
                    "strict",
                    process.stdout,
                    process.stdin,
                    "utf-8",
                    "replace",  # a name that is not UTF-8 is listed, not a failure
                    3,
                )
            except asyncssh.Error:
                await process.wait_closed()
                if process.exit_status == NO_SUCH_USER:
                    raise NotFound(f"no user {user!r} on {where}") from None
                raise
    try:
        yield MachineFiles(sftp, where, user)
    finally:
        sftp.exit()
        with contextlib.suppress(asyncssh.Error, OSError):
            await sftp.wait_closed()
