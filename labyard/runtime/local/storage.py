"""A machine's disk: a sparse ext4 file (the disk limit) holding the overlayfs upper layer
and the volumes that must not live on overlayfs (dockerd's /var/lib/docker).

    <machine_dir>/disk.img     sparse file, size = the machine's disk limit
    <machine_dir>/disk/        its mount: upper/, work/, volumes/<name>/
    <machine_dir>/rootfs/      overlayfs: image rootfs (read-only) + disk/upper
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from labyard.errors import RuntimeFailure


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeFailure(f"cannot {what}", detail=f"{' '.join(command)}: {result.stderr}")


def mounted_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, deepest first (the order to unmount them in)."""
    prefix = str(path.resolve())
    points: list[Path] = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(Path(point))
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


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


def mount_rootfs(machine_dir: Path, lower: Path, volumes: list[str]) -> Path:
    """Mount the copy-on-write root filesystem over the read-only image."""
    rootfs = machine_dir / "rootfs"
    rootfs.mkdir(exist_ok=True)
    for volume in volumes:
        volume_dir(machine_dir, volume).mkdir(parents=True, exist_ok=True)
    if rootfs in mounted_under(rootfs):
        return rootfs
    disk = machine_dir / "disk"
    options = f"lowerdir={lower},upperdir={disk / 'upper'},workdir={disk / 'work'}"
    _run(["mount", "-t", "overlay", "overlay", "-o", options, str(rootfs)], "mount the root fs")
    return rootfs


def unmount_all(path: Path) -> None:
    """Unmount everything at or below `path`; lazily if something still holds it."""
    for point in mounted_under(path):
        result = subprocess.run(["umount", str(point)], capture_output=True, check=False)
        if result.returncode != 0:
            _run(["umount", "-l", str(point)], f"unmount {point}")


def disk_usage(machine_dir: Path) -> tuple[int, int]:
    """(used, total) bytes of the machine's disk, or (0, 0) when it is not mounted."""
    disk = machine_dir / "disk"
    if disk not in mounted_under(disk):
        return (0, 0)
    st = os.statvfs(disk)
    return ((st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize)
