"""Writing files into a machine's root filesystem from the host, safely.

The rootfs is full of absolute symlinks (/var/run -> /run ...) that would point into the
host if followed from outside, so paths are resolved as if the rootfs were `/`.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from labyard.errors import InvalidInput
from labyard.images.layers import resolve_inside
from labyard.runtime.local.idmap import IdRange


def inside(rootfs: Path, path: str) -> Path:
    """The host path of `path` in the machine, following symlinks without leaving `rootfs`."""
    return resolve_inside(rootfs, list(PurePosixPath("/", path).parts[1:]), path)


def _lookup(rootfs: Path, table: str, name: str) -> int:
    if name.isdigit():
        return int(name)
    for line in inside(rootfs, f"/etc/{table}").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise InvalidInput(f"no {'user' if table == 'passwd' else 'group'} {name!r} in the machine")


def write(
    rootfs: Path,
    path: str,
    content: str | bytes,
    mode: int = 0o644,
    owner: str = "root",
    *,
    ids: IdRange,
) -> None:
    """Write a file into the machine, creating parent directories (root-owned, 0755).

    `owner` names a user of the machine; the file is owned by that user's host id in `ids`.
    """
    user, _, group = owner.partition(":")
    uid = _lookup(rootfs, "passwd", user)
    gid = _lookup(rootfs, "group", group) if group else _primary_gid(rootfs, user, uid)
    target = inside(rootfs, path)
    _make_dirs(rootfs, target.parent, ids)
    uid, gid = ids.host(uid), ids.host(gid)
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


def _make_dirs(rootfs: Path, directory: Path, ids: IdRange) -> None:
    missing = []
    while not directory.exists() and directory != rootfs:
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        new.mkdir(mode=0o755)
        os.chown(new, ids.host(0), ids.host(0))


def _primary_gid(rootfs: Path, user: str, uid: int) -> int:
    for line in inside(rootfs, "/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user or fields[2] == str(uid):
            return int(fields[3])
    return uid
