"""Playgrounds an item may name: the content folder's `playgrounds/*.yaml`, then built-ins."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from labyard.errors import ManifestError
from labyard.manifest import (
    Manifest,
    builtin_names,
    external_names,
    load_manifest,
    manifest_from_source,
)
from labyard.manifest.source import read_yaml


class PlaygroundIndex:
    def __init__(self, own: dict[str, Manifest] | None = None) -> None:
        self.own = own or {}

    def get(self, name: str) -> Manifest | None:
        if name in self.own:
            return self.own[name]
        # labyard's k3s playgrounds too (listed in the catalog only where their image is built)
        return _builtin(name) if name in {*builtin_names(), *external_names()} else None

    def names(self) -> list[str]:
        return sorted({*self.own, *builtin_names(), *external_names()})


@cache
def _builtin(name: str) -> Manifest:
    return load_manifest(name)


def load_playgrounds(root: Path, problems: list[str]) -> dict[str, Manifest]:
    """`root/playgrounds/*.yaml` by manifest name; problems are appended, not raised."""
    found: dict[str, Manifest] = {}
    where: dict[str, Path] = {}
    folder = root / "playgrounds"
    paths = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []
    for path in paths:
        try:
            source = read_yaml(path)
            manifest = manifest_from_source(source, path.parent)
        except ManifestError as exc:
            problems += exc.problems
            continue
        if manifest.name in found:
            problems.append(
                source.error(
                    ("name",),
                    f"playground {manifest.name!r} is also defined in {where[manifest.name]}",
                )
            )
            continue
        found[manifest.name], where[manifest.name] = manifest, path
    return found
