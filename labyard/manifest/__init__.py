"""Playground manifests: the models, loading with precise errors, and the built-in ones."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from labyard.errors import ManifestError, NotFound
from labyard.manifest.models import InitTask, Machine, Manifest, Network, StartupFile
from labyard.manifest.source import YamlSource, parse_yaml, read_yaml

__all__ = [
    "InitTask",
    "Machine",
    "Manifest",
    "Network",
    "StartupFile",
    "builtin_names",
    "external_names",
    "json_schema",
    "load_manifest",
    "manifest_from_source",
    "manifest_from_text",
    "validation_context",
]

BUILTIN_DIR = Path(__file__).parent / "builtin"


EXTERNAL_DIR = Path(__file__).parent / "external"
"""Built-in playgrounds whose images need files from outside the Debian archive (k3s): in
the catalog only where their images are built (services/catalog.py)."""


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def external_names() -> list[str]:
    return sorted(p.stem for p in EXTERNAL_DIR.glob("*.yaml"))


def manifest_from_source(source: YamlSource, folder: Path | None = None) -> Manifest:
    """Validate parsed YAML; every problem is reported at once, each with its line.

    `folder` is where the manifest file is: machine files may name a `source` in it. Without
    one (a manifest sent as text), `source` is refused.
    """
    if not isinstance(source.data, dict):
        raise ManifestError([source.error((), "a manifest is a mapping of fields")])
    try:
        manifest = Manifest.model_validate(source.data, context=validation_context(folder))
    except ValidationError as exc:
        raise source.errors_from(exc) from exc
    problems = manifest.reference_problems()
    if problems:
        raise ManifestError([source.error(loc, message) for loc, message in problems])
    return manifest


@functools.cache
def _packaged(folder: Path, name: str) -> Manifest:
    """A manifest that ships with labyard: read once, its file does not change while labyard
    runs (and a Manifest is immutable, so every caller may share it)."""
    return manifest_from_source(read_yaml(folder / f"{name}.yaml"), folder)


def load_manifest(name_or_path: str) -> Manifest:
    """A built-in playground by name, or a manifest file by path."""
    path = Path(name_or_path)
    if name_or_path in builtin_names():
        return _packaged(BUILTIN_DIR, name_or_path)
    if name_or_path in external_names():
        return _packaged(EXTERNAL_DIR, name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.exists():
            raise NotFound(f"manifest file {name_or_path} does not exist")
        return manifest_from_source(read_yaml(path), path.parent)
    known = ", ".join(builtin_names())
    raise NotFound(f"no built-in playground {name_or_path!r} (built-in: {known})")


def manifest_from_text(text: str, name: str) -> Manifest:
    return manifest_from_source(parse_yaml(text, name))


def validation_context(folder: Path | None) -> dict[str, Any] | None:
    """The pydantic context under which a manifest's files may name a `source` in `folder`."""
    return None if folder is None else {"manifest_dir": folder}


def json_schema() -> str:
    schema: dict[str, Any] = Manifest.model_json_schema()
    return json.dumps(schema, indent=2)
