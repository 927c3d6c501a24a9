"""The playground manifest: which machines, on which networks, set up by which init tasks."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetPydanticSchema,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from labyard.manifest.env import ENV_REFERENCE, env_entry

_DNS_LABEL = r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$"
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}

MAX_MACHINES = 16
MAX_NETWORKS = 8
MAX_EGRESS_DESTINATIONS = 64
MAX_FILE_BYTES = 8 << 20
"""The largest machine file: a manifest is stored, files and all, with each playground."""
_ONE_CONTENT = "give exactly one of content, content_base64 or source"


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


class Destination(NamedTuple):
    """Where egress may go: an IPv4 network (a single address is a /32) or a DNS name."""

    host: str
    network: ipaddress.IPv4Network | None
    """None for a name: it is resolved when the playground starts."""
    port: int | None
    """TCP and UDP; None for every port and protocol."""


_HOST_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?", re.I)
_DESTINATION_FORMS = "write HOST, HOST:PORT or a CIDR such as 10.1.0.0/16"


def parse_destination(text: object) -> Destination:
    """`10.1.2.3`, `10.1.2.3:443`, `10.0.0.0/8`, `registry.lan` or `registry.lan:5000`."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{text!r} is not a destination; {_DESTINATION_FORMS}")
    entry = text.strip()
    if entry.count(":") > 1 or entry.startswith("["):
        raise ValueError(f"{entry!r}: IPv6 destinations are never reachable (no IPv6 egress)")
    host, _, port_text = entry.partition(":")
    port = None
    if port_text or entry.endswith(":"):
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    if re.fullmatch(r"[\d./]+", host):
        try:
            return Destination(host, ipaddress.IPv4Network(host), port)
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not an IPv4 address or network ({exc})") from exc
    if not _HOST_NAME.fullmatch(host) or len(host) > 253:
        raise ValueError(f"{entry!r} is not a destination; {_DESTINATION_FORMS}")
    return Destination(host.lower(), None, port)


def _checked_destination(text: object) -> str:
    """The entry as the author wrote it, once it parses (resolved only at start)."""
    parse_destination(text)
    return str(text).strip()


def _egress(value: Any, destinations: ValidatorFunctionWrapHandler) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    if not isinstance(value, list | tuple):
        raise ValueError("must be true, false or a list of destinations (HOST[:PORT] or CIDR)")
    if len(value) > MAX_EGRESS_DESTINATIONS:
        raise ValueError(f"at most {MAX_EGRESS_DESTINATIONS} egress destinations")
    checked: tuple[str, ...] = destinations(value)
    return checked


_DestinationText = Annotated[str, BeforeValidator(_checked_destination)]
Egress = Annotated[
    bool | tuple[str, ...],
    GetPydanticSchema(  # bool or list without pydantic's union errors: items keep their line
        lambda _, handler: core_schema.no_info_wrap_validator_function(
            _egress,
            handler.generate_schema(tuple[_DestinationText, ...]),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v if isinstance(v, bool) else list(v)
            ),
        )
    ),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "boolean"},
                {"type": "array", "items": {"type": "string"}, "maxItems": MAX_EGRESS_DESTINATIONS},
            ]
        }
    ),
]
"""true: the internet minus private ranges; false: nothing; a list: only those destinations."""

Bytes = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]
Seconds = Annotated[int, BeforeValidator(parse_duration), Field(gt=0)]
Name = Annotated[str, Field(pattern=_DNS_LABEL)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_BOOT_MOUNTS = ("/run", "/var/run", "/tmp", "/dev", "/proc", "/sys")


class StartupFile(_Strict):
    """A file written into the machine before it boots: text (`content`), bytes
    (`content_base64`), or a file beside the manifest (`source`), exactly one of them.

    `source` is read when a manifest *file* is loaded (relative to its folder, never outside
    it) and becomes `content_base64`: a manifest sent as text (the API) cannot name files on
    the server. The name is kept for messages but not dumped, so a stored manifest is whole.
    """

    path: str = Field(pattern=r"^/")

    @field_validator("path")
    @classmethod
    def _survives_boot(cls, path: str) -> str:
        for mount in _BOOT_MOUNTS:
            if path == mount or path.startswith(mount + "/"):
                raise ValueError(f"{mount} is mounted fresh at boot, so a file there would be lost")
        return path

    content: str | None = None
    content_base64: str | None = None
    """The file's bytes in standard base64 (line breaks allowed), for binary files."""
    source: str | None = Field(None, exclude=True)
    """A file beside the manifest, e.g. `./bin/tool`; read at load time."""
    mode: str = Field("0644", pattern=r"^0?[0-7]{3,4}$")
    owner: str = "root"

    @field_validator("content_base64")
    @classmethod
    def _decodes(cls, value: str | None) -> str | None:
        if value is not None:
            size = len(_decode(value))
            if size > MAX_FILE_BYTES:
                raise ValueError(f"{_mib(size)} is more than a machine file may hold ({_mib()})")
        return value

    @model_validator(mode="before")
    @classmethod
    def _read_source(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or data.get("source") is None:
            return data
        if data.get("content") is not None or data.get("content_base64") is not None:
            raise ValueError(_ONE_CONTENT)
        folder = (info.context or {}).get("manifest_dir")
        if folder is None:
            raise ValueError(
                f"source {data['source']!r}: only a manifest file can name a file beside it "
                "(this manifest came as text); use content_base64"
            )
        raw = read_source(Path(folder), str(data["source"]))
        return {**data, "content_base64": base64.b64encode(raw).decode()}

    @model_validator(mode="after")
    def _one_content(self) -> StartupFile:
        if (self.content is None) == (self.content_base64 is None):
            raise ValueError(_ONE_CONTENT)
        return self

    def data(self) -> bytes:
        """The bytes to write."""
        if self.content_base64 is not None:
            return _decode(self.content_base64)
        return (self.content or "").encode()


def _mib(size: int = MAX_FILE_BYTES) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64 ({exc})") from None


def read_source(folder: Path, name: str) -> bytes:
    """The bytes of `name`, a file in `folder` (or below it); ValueError says why not."""
    relative = PurePosixPath(name)
    if relative.is_absolute() or not name.strip():
        raise ValueError(f"source {name!r}: name a file beside the manifest, e.g. ./bin/tool")
    base = folder.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise ValueError(f"source {name!r} points outside {base}")
    if not target.is_file():
        raise ValueError(f"source {name!r}: no file {target}")
    size = target.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(
            f"source {name!r} is {_mib(size)}, more than a machine file may hold ({_mib()})"
        )
    try:
        return target.read_bytes()
    except OSError as exc:
        raise ValueError(f"source {name!r}: cannot read {target}: {exc.strerror}") from None


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
    env: list[Annotated[str, AfterValidator(env_entry)]] = []
    """`NAME=value` strings exported to `run`; `x(.needs.TASK.stdout)` is what a task it
    needs printed (trailing newlines dropped): how one machine hands another a join token
    or a public key."""
    user: str = "root"
    timeout_seconds: int = Field(300, gt=0, le=3600)


class Manifest(_Strict):
    kind: Literal["playground"] = "playground"
    name: Name
    title: str = ""
    description: str = ""
    lifetime: Seconds = 3600
    egress: Egress = True
    """Where machines may go beyond their own networks, through NAT: true for the internet
    (never private, link-local or host addresses unless the operator's LABYARD_EGRESS_ALLOW
    lists them), false (or []) for nothing, or a list of `HOST[:PORT]` / CIDR entries that
    narrows that further; it never widens it."""
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
            for j, entry in enumerate(task.env):
                for ref in ENV_REFERENCE.finditer(entry):
                    if ref.group("input"):
                        problems.append((("init", i, "env", j), "init tasks take no x(.input)"))
                    elif ref.group("task") not in task.needs:
                        message = f"uses the output of {ref.group('task')!r}, not in its needs"
                        problems.append((("init", i, "env", j), message))
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
