"""Reading this project's instances: by name, one record each, not LXD's listing of every
record.

The listing with records (`/1.0/instances?recursion=1`) grows with the cluster: at 65
playgrounds it was 1.2 MB and half a second (each record holds the machine's seccomp policy),
and a start read it four times. Names alone are a few milliseconds, one record is 8 ms. But
a record on a member whose daemon is gone is asked of that member, and LXD answers only
after 10 s; the listing says `Error` for it at once. So a read that does not come back within
READ_TIMEOUT_S, or fails other than "not found", is answered by the listing instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

from labyard.runtime.lxd import config
from labyard.runtime.lxd.client import Lxd, LxdError, is_missing, name_of

READ_TIMEOUT_S = 2.0


async def names(lxd: Lxd) -> list[str]:
    """Every instance of the project, by name."""
    urls = await lxd.get("/1.0/instances")
    return [name_of(url) for url in urls]


async def listing(lxd: Lxd) -> list[dict[str, Any]]:
    """Every instance's record, as LXD lists them (instances on an unreachable member read
    `Error`, with no config)."""
    found: list[dict[str, Any]] = await lxd.get("/1.0/instances", recursion="1")
    return found


def unreachable(record: dict[str, Any]) -> bool:
    """An instance on a member that does not answer: the listing gives it no config."""
    return record.get("config") is None


async def read(lxd: Lxd, wanted: list[str]) -> dict[str, dict[str, Any]]:
    """The records of the instances named (name -> record); those that do not exist are
    left out."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            records = await asyncio.gather(*(_read_one(lxd, name) for name in wanted))
    except (TimeoutError, LxdError):  # a member that does not answer: the listing says so
        return {i["name"]: i for i in await listing(lxd) if i["name"] in wanted}
    return {name: r for name, r in zip(wanted, records, strict=True) if r is not None}


async def of_playground(
    lxd: Lxd, playground_id: str, machines: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Machine name -> the record of its instance, for one playground. `machines`, when the
    caller knows them, saves reading the names."""
    if machines is None:
        machines = [
            machine
            for name in await names(lxd)
            for owner, machine in [config.owner_by_name(name)]
            if owner == playground_id
        ]
    records = await read(lxd, [config.instance_name(playground_id, m) for m in machines])
    return {
        machine: record
        for record in records.values()
        for owner, machine in [config.owner_of(record)]
        if owner == playground_id
    }


async def _read_one(lxd: Lxd, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = await lxd.get(f"/1.0/instances/{name}")
    except LxdError as exc:
        if is_missing(exc):
            return None
        raise
    return found
