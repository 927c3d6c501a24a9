"""A machine's disk: a sparse ext4 file (the disk limit) holding the overlayfs upper layer
and the volumes that must not live on overlayfs (dockerd's /var/lib/docker).

    <machine_dir>/disk.img     sparse file, size = the machine's disk limit
    <machine_dir>/disk/        its mount: upper/, work/, volumes/<name>/
    <machine_dir>/image/       the image's rootfs, idmapped to the machine's ids, read-only
    <machine_dir>/rootfs/      overlayfs: image/ + disk/upper

The upper layer and the volumes belong to the machine's root (its first host id): what root
in the machine writes is owned by that unprivileged host user.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from labyard.errors import RuntimeFailure
from labyard.runtime.local.idmap import IdRange
from labyard.runtime.local.userns import detach, mount_idmapped


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeFailure(f"cannot {what}", detail=f"{' '.join(command)}: {result.stderr}")


def mounted_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, deepest first (the order to unmount them in).

    Every mount of this namespace is listed, those hidden under another mount too: one
    path may come more than once.
    """
    prefix = str(path.resolve())
    points: list[Path] = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = _unescape(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                points.append(Path(point))
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def _unescape(field: str) -> str:
    """A mountinfo path as it is: the kernel writes space, tab, newline and backslash as
    three octal digits after a backslash."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def make_traversable(path: Path) -> None:
    """Let every user search `path` and its parents (o+x, not o+r).

    runc's init opens the machine's root and volumes as the machine's root, an unprivileged
    host user: a 0700 directory on the way (a test's temporary directory) would stop it.
    """
    path.mkdir(parents=True, exist_ok=True)
    for directory in [path, *path.resolve().parents]:
        mode = directory.stat().st_mode
        if not mode & 0o001:
            directory.chmod(mode | 0o001)


def volume_dir(machine_dir: Path, volume: str) -> Path:
    return machine_dir / "disk" / "volumes" / volume.strip("/").replace("/", "_")


def mount_disk(machine_dir: Path, size_bytes: int) -> None:
    """Create (first time) and mount the machine's disk; a no-op when already mounted."""
    image = machine_dir / "disk.img"
    disk = machine_dir / "disk"
    if disk in mounted_under(disk):
        return
    disk.mkdir(parents=True, exist_ok=True)
    if not image.exists():
        with open(image, "wb") as f:
            f.truncate(size_bytes)
        _run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-m",
                "0",
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
                str(image),
            ],
            "format the machine's disk",
        )
    _run(["mount", "-o", "loop,noatime", str(image), str(disk)], "mount the machine's disk")
    for sub in ("upper", "work", "volumes"):
        (disk / sub).mkdir(exist_ok=True)


def mount_rootfs(
    machine_dir: Path, image_rootfs: Path, volumes: list[str], ids: IdRange, userns: Path
) -> Path:
    """Mount the copy-on-write root filesystem over the read-only, idmapped image."""
    rootfs = machine_dir / "rootfs"
    rootfs.mkdir(exist_ok=True)
    disk = machine_dir / "disk"
    root = ids.host(0)
    for owned in [disk / "upper", *(volume_dir(machine_dir, v) for v in volumes)]:
        owned.mkdir(parents=True, exist_ok=True)
        os.chown(owned, root, root)
    if rootfs in mounted_under(rootfs):
        return rootfs
    image = machine_dir / "image"
    if image not in mounted_under(image):
        mount_idmapped(image_rootfs, image, userns)
    options = f"lowerdir={image},upperdir={disk / 'upper'},workdir={disk / 'work'}"
    _run(["mount", "-t", "overlay", "overlay", "-o", options, str(rootfs)], "mount the root fs")
    return rootfs


def device_nodes(machine_dir: Path, devices: list[dict[str, Any]], ids: IdRange) -> dict[str, Path]:
    """Make the machine's own character device nodes (0666, its root's); path -> node."""
    nodes_dir = machine_dir / "dev"
    nodes_dir.mkdir(exist_ok=True)
    nodes = {}
    for device in devices:
        node = nodes_dir / Path(device["path"]).name
        if not node.exists():
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(device["major"], device["minor"]))
        os.chmod(node, 0o666)
        os.chown(node, ids.host(0), ids.host(0))
        nodes[device["path"]] = node
    return nodes


def unmount_all(path: Path) -> list[Path]:
    """Unmount everything at or below `path`; lazily if something still holds it.

    Returns the mount points left: mounts of this namespace hidden under a mount over one
    of their parents (a recursive bind of a parent over itself copies them on top), which
    no path reaches. Nothing in them is reachable either; they go once that mount goes.
    """
    for point in mounted_under(path):
        result = subprocess.run(["umount", str(point)], capture_output=True, check=False)
        if result.returncode != 0:
            detach(point)  # False: hidden, or gone meanwhile (a parent's went with it)
    return mounted_under(path)


def leave_held(
    function: Callable[..., Any],
    failed: str,
    info: tuple[type[BaseException], BaseException, TracebackType],
) -> None:
    """shutil.rmtree's error handler for a playground's directory: what a hidden mount
    (unmount_all) holds cannot be removed (EBUSY), nor the directories above it
    (ENOTEMPTY); it is left, inert, for a later destroy. Gone already is fine; anything
    else is a RuntimeFailure."""
    exc = info[1]
    if isinstance(exc, FileNotFoundError):
        return
    if isinstance(exc, OSError) and exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
        return
    raise RuntimeFailure(f"cannot remove {failed}", detail=str(exc)) from exc


def disk_usage(machine_dir: Path) -> tuple[int, int]:
    """(used, total) bytes of the machine's disk, or (0, 0) when it is not mounted."""
    disk = machine_dir / "disk"
    if disk not in mounted_under(disk):
        return (0, 0)
    st = os.statvfs(disk)
    return ((st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize)
