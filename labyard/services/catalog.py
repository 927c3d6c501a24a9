"""The playground catalog: built-in manifests plus every playground manifest in the content
folder (`*.yaml` files whose `kind` is `playground`). An entry whose images are not built on
this host is listed as unavailable (an operator builds them with `labyard image build`).
The built-in playgrounds whose images need files from outside the Debian archive (k3s,
`labyard/manifest/external/`) are listed only where their images are built."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from labyard.errors import ManifestError, NotFound
from labyard.images import find_image
from labyard.manifest import (
    Manifest,
    builtin_names,
    external_names,
    load_manifest,
    manifest_from_source,
)
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
        built: dict[str, bool] = {}  # an image many entries use is looked up once
        entries = [replace(e, missing_images=self._missing(e.manifest, built)) for e in self._all()]
        return sorted(entries, key=lambda e: (e.source != "builtin", e.name))

    def _all(self) -> list[Entry]:
        """Every entry, its images not checked yet."""
        found = {n: Entry(n, load_manifest(n), "builtin") for n in builtin_names()}
        for name in external_names():
            manifest = load_manifest(name)
            if self.images_dir is not None and not self._missing(manifest):
                found[name] = Entry(name, manifest, "builtin")
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
        return list(found.values())

    def _missing(self, manifest: Manifest, built: dict[str, bool] | None = None) -> tuple[str, ...]:
        if self.images_dir is None:
            return ()
        built = {} if built is None else built
        for image in {m.image for m in manifest.machines} - set(built):
            try:
                find_image(self.images_dir, image)
                built[image] = True
            except NotFound:
                built[image] = False
        return tuple(sorted(i for i in {m.image for m in manifest.machines} if not built[i]))

    def get(self, name: str) -> Entry:
        for entry in self._all():
            if entry.name == name:
                return replace(entry, missing_images=self._missing(entry.manifest))
        raise NotFound(f"no playground {name!r} in the catalog")
