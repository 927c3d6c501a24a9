"""The playground catalog: built-in manifests plus every playground manifest in the content
folder (`*.yaml` files whose `kind` is `playground`). An entry whose images the runtime
driver cannot run is listed as unavailable (with the local driver, an operator builds them
with `labyard image build`).
The built-in playgrounds whose images need files from outside the Debian archive (k3s,
`labyard/manifest/external/`) are listed only where their images are built."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from labyard.errors import ManifestError, NotFound
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
    def __init__(
        self,
        content_dir: Path | None = None,
        runnable: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.content_dir = content_dir
        self.runnable = runnable
        """What the driver can run (`Driver.images`); None: every entry counts as available."""
        self.problems: list[str] = []

    def entries(self) -> list[Entry]:
        runnable = self.runnable() if self.runnable else None  # asked once for all entries
        entries = [
            replace(e, missing_images=self._missing(e.manifest, runnable)) for e in self._all()
        ]
        return sorted(entries, key=lambda e: (e.source != "builtin", e.name))

    def _all(self) -> list[Entry]:
        """Every entry, its images not checked yet."""
        found = {n: Entry(n, load_manifest(n), "builtin") for n in builtin_names()}
        for name in external_names():
            manifest = load_manifest(name)
            runnable = self.runnable() if self.runnable else None
            if runnable is not None and not self._missing(manifest, runnable):
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

    def _missing(self, manifest: Manifest, runnable: Mapping[str, str] | None) -> tuple[str, ...]:
        """The images of `manifest` that the driver cannot run for everyone."""
        if runnable is None:
            return ()
        needed = {m.image for m in manifest.machines}
        return tuple(sorted(i for i in needed if runnable.get(i) != ""))

    def get(self, name: str) -> Entry:
        for entry in self._all():
            if entry.name == name:
                runnable = self.runnable() if self.runnable else None
                return replace(entry, missing_images=self._missing(entry.manifest, runnable))
        raise NotFound(f"no playground {name!r} in the catalog")
