"""Host uid/gid ranges for machines' user namespaces, allocated host-wide.

Every machine gets its own range of 65,536 host ids: uid 0 inside is the range's first id
outside, an unprivileged user no other machine, playground or host user has. The ranges
come from labyard's subordinate range in /etc/subuid and /etc/subgid (user `labyard`,
added there when missing, after whatever ranges other tools already own), so podman or
LXC on the same host never hand out the same ids.

A machine keeps its range until its playground is destroyed: its writable layer is owned by
those ids, so a stopped machine must come back with the same ones. Allocations live in one
file per range in a host-wide directory shared by every labyard instance on the host, named
for the range and its owner `instance/playground/machine`; a flock on the directory
serialises allocation. Files, not a database: the reconciler must be able to free them after a crash
with nothing but the host to go on.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labyard.errors import LimitExceeded, RuntimeFailure

RANGE_SIZE = 65536
"""Ids per machine: every uid and gid a Debian system uses (nobody is 65534)."""

SUBORDINATE_USER = "labyard"
DEFAULT_START = 1 << 30
"""Far above the ids Debian gives users (1000...) and the subuid ranges it hands out
(100000 + 65536 per user), so labyard's range does not collide with them."""
DEFAULT_COUNT = 1 << 30
"""16,384 machines' worth of ranges."""

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")


@dataclass(frozen=True)
class IdRange:
    start: int
    size: int = RANGE_SIZE

    def host(self, inside: int) -> int:
        """The host id of id `inside` of the machine."""
        return self.start + inside

    def to_json(self) -> dict[str, int]:
        return {"start": self.start, "size": self.size}


def _ranges_in(path: Path) -> list[tuple[str, int, int]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
            entries.append((fields[0], int(fields[1]), int(fields[2])))
    return entries


def subordinate_range() -> tuple[int, int]:
    """(first id, count) of labyard's subordinate range, added to /etc/sub[ug]id if missing."""
    for path in (SUBUID, SUBGID):
        if not any(name == SUBORDINATE_USER for name, _, _ in _ranges_in(path)):
            _add_subordinate(path)
    uid = next(e for e in _ranges_in(SUBUID) if e[0] == SUBORDINATE_USER)
    gid = next(e for e in _ranges_in(SUBGID) if e[0] == SUBORDINATE_USER)
    if (uid[1], uid[2]) != (gid[1], gid[2]):
        raise RuntimeFailure(
            f"labyard's ranges in {SUBUID} ({uid[1]}:{uid[2]}) and {SUBGID} "
            f"({gid[1]}:{gid[2]}) differ; make them the same"
        )
    if uid[2] < RANGE_SIZE:
        raise RuntimeFailure(f"labyard's range in {SUBUID} holds fewer than {RANGE_SIZE} ids")
    return uid[1], uid[2]


def _add_subordinate(path: Path) -> None:
    taken_end = max((start + count for _, start, count in _ranges_in(path)), default=0)
    start = max(DEFAULT_START, -(-taken_end // RANGE_SIZE) * RANGE_SIZE)
    with open(path, "a") as f:
        f.write(f"{SUBORDINATE_USER}:{start}:{DEFAULT_COUNT}\n")


class Registry:
    """Which machine holds which range, host-wide: one empty file `<start>@<owner>` per
    range (`/` in the owner written as `:`), so a directory listing says it all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _owners(self) -> dict[int, str]:
        owners = {}
        for name in os.listdir(self.directory):
            start, sep, owner = name.partition("@")
            if sep and start.isdigit():
                owners[int(start)] = owner.replace(":", "/")
        return owners

    def allocate(self, owner: str) -> IdRange:
        """The range `owner` holds, or a newly allocated free one."""
        first, count = subordinate_range()
        with self._locked():
            owners = self._owners()
            for start, holder in owners.items():
                if holder == owner:
                    return IdRange(start)
            for start in range(first, first + count - RANGE_SIZE + 1, RANGE_SIZE):
                if start not in owners:
                    (self.directory / f"{start}@{owner.replace('/', ':')}").touch()
                    return IdRange(start)
        raise LimitExceeded(
            f"no free id range left for another machine ({count // RANGE_SIZE} in {SUBUID})"
        )

    def release(self, owner_prefix: str) -> None:
        """Free every range whose owner starts with `owner_prefix`."""
        if not self.directory.exists():
            return
        with self._locked():
            for start, holder in self._owners().items():
                if holder.startswith(owner_prefix):
                    name = f"{start}@{holder.replace('/', ':')}"
                    (self.directory / name).unlink(missing_ok=True)

    def owners(self, owner_prefix: str) -> list[str]:
        """Owners of allocated ranges that start with `owner_prefix`."""
        if not self.directory.exists():
            return []
        return sorted(h for h in self._owners().values() if h.startswith(owner_prefix))
