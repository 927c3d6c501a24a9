"""Finding and reading machines' cgroups, on cgroup v1, v2 and hybrid hosts alike.

runc places a relative cgroupsPath under the caller's own cgroup in each hierarchy, which can
differ per hierarchy and per caller, so machines' cgroups are found by name, not by formula.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_MAX_DEPTH = 6


def _hierarchies() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 controllers, named ones and v2)."""
    return [point for point, _ in _hierarchy_options()]


def _find(top: Path, name: str, depth: int = 0) -> Iterator[Path]:
    try:
        children = [e for e in os.scandir(top) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for entry in children:
        if entry.name == name:
            yield Path(entry.path)
        elif depth < _MAX_DEPTH:
            yield from _find(Path(entry.path), name, depth + 1)


def parents(name: str) -> list[Path]:
    """Every directory called `name` in every hierarchy (the instance's cgroup parents)."""
    return [found for top in _hierarchies() for found in _find(top, name)]


def machine_cgroups(parent_name: str, container: str) -> list[Path]:
    return [p / container for p in parents(parent_name) if (p / container).is_dir()]


# What the machine's root may write in its own top cgroup: enough to make and fill child
# cgroups (systemd's units, dockerd's containers), never its own limits (memory.limit_in_bytes,
# pids.max, cpu.cfs_quota_us stay root's), so the limits hold whatever it does inside.
_DELEGATED = ("cgroup.procs", "tasks", "cgroup.threads", "cgroup.subtree_control")


def process_cgroups(pid: int) -> list[Path]:
    """The host directory of process `pid`'s cgroup in every hierarchy."""
    mounts = _hierarchy_options()
    found = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        wanted = set(controllers.split(",")) if controllers else {"cgroup2"}
        for point, options in mounts:
            if wanted <= options:
                found.append(point / path.lstrip("/"))
                break
    return found


def _hierarchy_options() -> list[tuple[Path, set[str]]]:
    """(mount point, its options; `cgroup2` for the v2 hierarchy) of every hierarchy."""
    mounts = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype == "cgroup2":
                mounts.append((Path(fields[4]), {"cgroup2"}))
            elif fstype == "cgroup":
                mounts.append((Path(fields[4]), set(fields[-1].split(","))))
    return mounts


def delegate(pid: int, uid: int, gid: int) -> None:
    """Hand process `pid`'s cgroups (a created, not yet started machine) to its mapped root."""
    for path in process_cgroups(pid):
        os.chown(path, uid, gid)
        for name in _DELEGATED:
            with contextlib.suppress(FileNotFoundError):
                os.chown(path / name, uid, gid)


def remove_tree(path: Path) -> None:
    """rmdir a cgroup and everything below it (cgroups are removed leaves first)."""
    if not path.is_dir():
        return
    for child in [p for p in path.iterdir() if p.is_dir()]:
        remove_tree(child)
    with contextlib.suppress(OSError):  # still has a process: the reconciler tries again
        path.rmdir()


def memory_in_use(parent_name: str, container: str) -> int:
    """Bytes in use by the machine, without reclaimable page cache (the working set)."""
    for path in machine_cgroups(parent_name, container):
        stat = _stat(path / "memory.stat")
        if (path / "memory.usage_in_bytes").exists():  # v1
            usage = int((path / "memory.usage_in_bytes").read_text())
            return max(0, usage - stat.get("total_inactive_file", 0))
        if (path / "memory.current").exists():  # v2
            usage = int((path / "memory.current").read_text())
            return max(0, usage - stat.get("inactive_file", 0))
    return 0


def _stat(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v) for k, v in (line.split() for line in lines)}
