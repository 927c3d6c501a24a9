"""The playground manifest: which machines, on which networks, set up by which init tasks."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

_DNS_LABEL = r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$"
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}

MAX_MACHINES = 16
MAX_NETWORKS = 8


def parse_size(value: object) -> int:
    """`512MiB`, `2G`, `1gb` or a plain number of bytes -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*", str(value), re.IGNORECASE)
    if match is None:
        raise ValueError(f"{value!r} is not a size; write e.g. 512MiB or 2GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_duration(value: object) -> int:
    """`90s`, `30m`, `2h`, `1d` or a plain number of seconds -> seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 30m or 2h")
    return int(match.group(1)) * _DURATION[match.group(2)]


Bytes = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]
Seconds = Annotated[int, BeforeValidator(parse_duration), Field(gt=0)]
Name = Annotated[str, Field(pattern=_DNS_LABEL)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_BOOT_MOUNTS = ("/run", "/var/run", "/tmp", "/dev", "/proc", "/sys")


class StartupFile(_Strict):
    """A file written into the machine before it boots."""

    path: str = Field(pattern=r"^/")

    @field_validator("path")
    @classmethod
    def _survives_boot(cls, path: str) -> str:
        for mount in _BOOT_MOUNTS:
            if path == mount or path.startswith(mount + "/"):
                raise ValueError(f"{mount} is mounted fresh at boot, so a file there would be lost")
        return path

    content: str
    mode: str = Field("0644", pattern=r"^0?[0-7]{3,4}$")
    owner: str = "root"


class Machine(_Strict):
    name: Name
    image: str = "linux"
    cpus: float = Field(1.0, gt=0, le=64)
    memory: Bytes = 1 << 30
    disk: Bytes = 4 << 30
    """Size of the machine's writable layer (everything it writes outside tmpfs)."""
    processes: int = Field(1024, ge=64, le=65536)
    files: list[StartupFile] = []


class Network(_Strict):
    name: Name
    machines: list[Name] | None = None
    """Machines attached to it; all of them when left out."""


class InitTask(_Strict):
    """A script run in one machine once the playground is up, after the tasks it `needs`."""

    name: Name
    machine: Name | None = None
    """Defaults to the first machine."""
    run: str
    needs: list[Name] = []
    user: str = "root"
    timeout_seconds: int = Field(300, gt=0, le=3600)


class Manifest(_Strict):
    kind: Literal["playground"] = "playground"
    name: Name
    title: str = ""
    description: str = ""
    lifetime: Seconds = 3600
    egress: bool = True
    """Whether machines may reach the outside world through NAT."""
    machines: list[Machine] = Field(min_length=1, max_length=MAX_MACHINES)
    networks: list[Network] = Field(
        default_factory=lambda: [Network(name="default")], min_length=1, max_length=MAX_NETWORKS
    )
    init: list[InitTask] = []

    def reference_problems(self) -> list[tuple[tuple[int | str, ...], str]]:
        """Names that point nowhere, duplicates and cycles, each with the field it is in."""
        problems: list[tuple[tuple[int | str, ...], str]] = []
        machines = [m.name for m in self.machines]
        tasks = [t.name for t in self.init]
        problems += _duplicates("machines", machines)
        problems += _duplicates("networks", [n.name for n in self.networks])
        problems += _duplicates("init", tasks)
        for i, network in enumerate(self.networks):
            for j, name in enumerate(network.machines or []):
                problems += _unknown(("networks", i, "machines", j), "machine", name, machines)
        for i, task in enumerate(self.init):
            if task.machine is not None:
                problems += _unknown(("init", i, "machine"), "machine", task.machine, machines)
            for j, need in enumerate(task.needs):
                problems += _unknown(("init", i, "needs", j), "task", need, tasks)
        if not problems:
            problems += _cycles(self.init)
        return problems

    def machine_networks(self, machine: str) -> list[Network]:
        """The networks a machine is attached to, in manifest order (eth0, eth1, ...)."""
        return [n for n in self.networks if n.machines is None or machine in n.machines]


Problem = tuple[tuple[int | str, ...], str]


def _duplicates(field: str, names: list[str]) -> list[Problem]:
    seen: set[str] = set()
    problems: list[Problem] = []
    for i, name in enumerate(names):
        if name in seen:
            problems.append(((field, i, "name"), f"name {name!r} is used twice"))
        seen.add(name)
    return problems


def _unknown(loc: tuple[int | str, ...], what: str, name: str, names: list[str]) -> list[Problem]:
    if name in names:
        return []
    return [(loc, f"unknown {what} {name!r} (known: {', '.join(names) or 'none'})")]


def _cycles(tasks: list[InitTask]) -> list[Problem]:
    needs = {t.name: t.needs for t in tasks}
    index = {t.name: i for i, t in enumerate(tasks)}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> list[Problem]:
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            return [(("init", index[name], "needs"), f"init tasks need each other: {cycle}")]
        if name in done:
            return []
        for need in needs[name]:
            found = visit(need, (*path, name))
            if found:
                return found
        done.add(name)
        return []

    for task in tasks:
        found = visit(task.name, ())
        if found:
            return found
    return []
