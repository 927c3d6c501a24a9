"""Where a Killercoda scenario runs: `backend.imageid` as a playground of the catalog, and
`details.assets` as the machine files of that playground's machines."""

from __future__ import annotations

import re
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from labyard.content.killercoda import assets, front_matter
from labyard.content.killercoda.index_json import Scenario
from labyard.content.playgrounds import PlaygroundIndex
from labyard.errors import NotFound
from labyard.manifest import Manifest, StartupFile, external_names

MACHINE_FILES = "machine-files"
"""Folder of the tutorial holding binary assets, named by the machine files' `source`."""
_DOCKER = re.compile(r"\bdocker\s+(?:run|ps|build|pull|images|exec|compose|container|image)\b")

ImageCheck = Callable[[str], bool]
"""Whether a machine image is built on this host."""


@dataclass(frozen=True)
class Base:
    name: str
    manifest: Manifest


def backend(
    source: Scenario, index: PlaygroundIndex, has_image: ImageCheck | None, scripts: str
) -> Base:
    """The catalog playground for `backend.imageid`:

    - `kubernetes-*` (kubeadm, k3s): `k3s` for one node, `k3s-cluster` for more, when the
      catalog has that playground (and, given `has_image`, its images are built); otherwise
      `linux` / `linux-cluster` with a warning (Kubernetes is then not installed);
    - anything with `docker` in it: `docker`;
    - `ubuntu*`, `debian*`: `linux`, or `docker` when the scenario runs docker (Killercoda's
      ubuntu has it); `linux-cluster` when it has more nodes (`...-2nodes`);
    - anything else: the same, with a warning.
    """
    image = source.get("backend", "imageid")
    text = str(image or "").lower()
    nodes = max(int(found.group(1)) if (found := re.search(r"(\d+)nodes?\b", text)) else 1, 1)
    plain = "linux" if nodes == 1 else "linux-cluster"
    if image is None:
        source.warn(f"backend.imageid: missing; using the {plain} playground")
    elif re.search(r"kubernetes|k8s|k3s|kubeadm", text):
        wanted = "k3s" if nodes == 1 else "k3s-cluster"
        if _usable(index, wanted, has_image):
            return _base(source, index, wanted, nodes)
        source.warn(
            f"backend.imageid: {image!r}: no {wanted} playground here (or its image is not "
            f"built); using {plain}, where Kubernetes is not installed (install it in a setup "
            "task, or build the k3s image and import again)"
        )
    elif "docker" in text:
        return _base(source, index, "docker", nodes)
    elif re.match(r"^(ubuntu|debian)", text):
        if nodes == 1 and _DOCKER.search(scripts) and _usable(index, "docker", None):
            source.warn(
                f"backend.imageid: {image!r}: the scenario runs docker, which Killercoda's "
                "image has; using the docker playground"
            )
            return _base(source, index, "docker", nodes)
    else:
        source.warn(f"backend.imageid: {image!r} is unknown here; using the {plain} playground")
    return _base(source, index, plain, nodes)


def _usable(index: PlaygroundIndex, name: str, has_image: ImageCheck | None) -> bool:
    manifest = index.get(name)
    if manifest is None:
        return False
    if has_image is None and name in external_names() and name not in index.own:
        return False  # labyard's k3s playgrounds: only where their images are known built
    return has_image is None or all(has_image(m.image) for m in manifest.machines)


def _base(source: Scenario, index: PlaygroundIndex, name: str, nodes: int) -> Base:
    manifest = index.get(name) or index.get("linux")
    if manifest is None:  # the built-in linux playground is always there
        raise NotFound("no linux playground")
    if len(manifest.machines) < nodes:
        source.warn(
            f"backend.imageid: the scenario has {nodes} hosts, the {manifest.name} playground "
            f"{len(manifest.machines)} machines; the hosts beyond them are left out"
        )
    return Base(manifest.name, manifest)


def _hosts(source: Scenario) -> list[str]:
    found = source.get("details", "assets", mark=False)
    return list(found) if isinstance(found, dict) else []


def playground(source: Scenario, slug: str, base: Base, draft: Path) -> str | dict[str, Any]:
    """The base playground's name, or an inline copy of it whose machines have the assets."""
    files = _assets(source, base.manifest, draft)
    if not any(files.values()):
        return base.name
    name = re.sub(r"-+$", "", ("k-" + slug if not slug[0].isalpha() else slug)[:32])
    manifest = base.manifest.model_dump(mode="json", exclude_defaults=True)
    manifest.update(name=name, title=source.text("title", default=base.manifest.title))
    for machine in manifest["machines"]:
        machine["files"] = [*machine.get("files", []), *files.get(machine["name"], {}).values()]
        if not machine["files"]:
            del machine["files"]
    return manifest


def _assets(source: Scenario, base: Manifest, draft: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Machine files by machine name, then path in the machine (a later asset for the same
    path replaces an earlier one, as a later upload would)."""
    machines = [m.name for m in base.machines]
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for host in _hosts(source):
        entries = source.get("details", "assets", host)
        machine = _machine_of(host, machines)
        if machine is None:
            source.warn(
                f"details.assets.{host}: the {base.name} playground has no machine for it "
                f"(machines: {', '.join(machines)}); left out"
            )
            continue
        for i in range(len(entries) if isinstance(entries, list) else 0):
            for entry in _asset(source, ("details", "assets", host, i), draft):
                path = str(entry["path"])
                if path in found.setdefault(machine, {}):
                    source.warn(f"details.assets.{host}.{i}: {path} given twice; the last wins")
                found[machine][path] = entry
    return found


def _machine_of(host: str, machines: list[str]) -> str | None:
    """`host01` is the first machine, `host02` the second...; a machine's own name is itself."""
    if host in machines:
        return host
    numbered = re.fullmatch(r"host0*(\d+)", host)
    if numbered and 1 <= int(numbered.group(1)) <= len(machines):
        return machines[int(numbered.group(1)) - 1]
    return None


def _asset(source: Scenario, path: tuple[str | int, ...], draft: Path) -> list[dict[str, Any]]:
    where = ".".join(map(str, path))
    pattern, target = source.get(*path, "file"), source.get(*path, "target")
    chmod = source.get(*path, "chmod")
    mode = assets.mode(chmod)
    if mode is None:
        source.warn(f"{where}.chmod: {chmod!r} is not a mode chmod takes; using 0644")
        mode = assets.BASE_MODE
    folder = source.folder / "assets"
    found = assets.matches(folder, str(pattern), target) if pattern else []
    files = [f for f in (_file(source, where, m, f"{mode:04o}", draft) for m in found) if f]
    if not found:
        source.warn(f"{where}.file: {pattern!r} matches no file in {folder}; left out")
    return files


def _file(
    source: Scenario, where: str, match: assets.Match, mode: str, draft: Path
) -> dict[str, Any] | None:
    """One machine file: text inline, bytes copied beside the tutorial (`source:`); None,
    with a warning, for one labyard cannot place."""
    if not match.file.resolve().is_relative_to(source.folder.resolve()):
        source.warn(f"{where}: {match.file} links outside the scenario; left out")
        return None
    raw = match.file.read_bytes()
    text = _as_text(raw)
    data = {"content": text} if text is not None else {"content_base64": b64encode(raw).decode()}
    entry: dict[str, Any] = {"path": match.destination, "mode": mode}
    try:
        StartupFile.model_validate(entry | data)
    except ValidationError as exc:
        reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        source.warn(f"{where}: {match.file.name} cannot go to {match.destination}: {reason}")
        return None
    if text is not None:
        return entry | data
    copy = Path(MACHINE_FILES, match.file.relative_to(source.folder / "assets"))
    (draft / copy).parent.mkdir(parents=True, exist_ok=True)
    (draft / copy).write_bytes(raw)  # one copy for every machine and path it goes to
    return entry | {"source": copy.as_posix()}


def _as_text(raw: bytes) -> str | None:
    """The file as text when it is UTF-8 without NUL bytes that the front matter holds
    exactly (None: keep it as bytes)."""
    if b"\0" in raw:
        return None
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    return text if front_matter.keeps(text) else None
