"""Writing files into a machine's root filesystem from the host, safely.

The rootfs is full of absolute symlinks (/var/run -> /run ...) that would point into the
host if followed from outside, so paths are resolved as if the rootfs were `/`.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from labyard.images.layers import resolve_inside
from labyard.runtime.local.idmap import IdRange
from labyard.runtime.machine_setup import owner_ids


def inside(rootfs: Path, path: str) -> Path:
    """The host path of `path` in the machine, following symlinks without leaving `rootfs`."""
    return resolve_inside(rootfs, list(PurePosixPath("/", path).parts[1:]), path)


def write(
    rootfs: Path,
    path: str,
    content: str | bytes,
    mode: int = 0o644,
    owner: str = "root",
    *,
    ids: IdRange,
    folder_mode: int = 0o755,
) -> None:
    """Write a file into the machine, creating parent directories (root-owned, 0755; the
    file's own folder `folder_mode`).

    `owner` names a user of the machine; the file is owned by that user's host id in `ids`.
    """
    uid, gid = owner_ids(rootfs, owner)
    target = inside(rootfs, path)
    _make_dirs(rootfs, target.parent, ids, folder_mode)
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


def _make_dirs(rootfs: Path, directory: Path, ids: IdRange, last_mode: int) -> None:
    missing = []
    while not directory.exists() and directory != rootfs:
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        new.mkdir(mode=last_mode if new == missing[0] else 0o755)
        os.chown(new, ids.host(0), ids.host(0))
