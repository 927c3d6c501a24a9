"""The playground catalog: built-in manifests plus every playground manifest in the content
folder (`*.yaml` files whose `kind` is `playground`). An entry whose images are not built on
this host is listed as unavailable (an operator builds them with `labyard image build`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from labyard.errors import ManifestError, NotFound
from labyard.images import find_image
from labyard.manifest import Manifest, builtin_names, load_manifest, manifest_from_source
from labyard.manifest.source import read_yaml


@dataclass(frozen=True)
class Entry:
    name: str
    manifest: Manifest
    source: str
    """`builtin` or the file it came from."""
    missing_images: tuple[str, ...] = ()
    """Images its machines use that are not built here: it cannot start until they are."""

    @property
    def available(self) -> bool:
        return not self.missing_images

    def to_json(self) -> dict[str, object]:
        m = self.manifest
        return {
            "name": self.name,
            "available": self.available,
            "missing_images": list(self.missing_images),
            "title": m.title or m.name,
            "description": m.description,
            "lifetime_s": m.lifetime,
            "machines": [
                {"name": x.name, "image": x.image, "cpus": x.cpus, "memory": x.memory}
                for x in m.machines
            ],
        }


class Catalog:
    def __init__(self, content_dir: Path | None = None, images_dir: Path | None = None) -> None:
        self.content_dir = content_dir
        self.images_dir = images_dir
        """Where images are built; None: every entry counts as available."""
        self.problems: list[str] = []

    def entries(self) -> list[Entry]:
        found = {n: Entry(n, load_manifest(n), "builtin") for n in builtin_names()}
        self.problems = []
        for path in sorted(self.content_dir.rglob("*.yaml")) if self.content_dir else []:
            try:
                source = read_yaml(path)
                if not isinstance(source.data, dict) or source.data.get("kind") != "playground":
                    continue
                manifest = manifest_from_source(source, path.parent)
            except ManifestError as exc:
                self.problems += exc.problems  # one broken file must not hide the others
                continue
            found[manifest.name] = Entry(manifest.name, manifest, str(path))
        entries = [replace(e, missing_images=self._missing(e.manifest)) for e in found.values()]
        return sorted(entries, key=lambda e: (e.source != "builtin", e.name))

    def _missing(self, manifest: Manifest) -> tuple[str, ...]:
        if self.images_dir is None:
            return ()
        missing = []
        for image in sorted({m.image for m in manifest.machines}):
            try:
                find_image(self.images_dir, image)
            except NotFound:
                missing.append(image)
        return tuple(missing)

    def get(self, name: str) -> Entry:
        for entry in self.entries():
            if entry.name == name:
                return entry
        raise NotFound(f"no playground {name!r} in the catalog")
