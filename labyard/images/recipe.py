"""Image recipes: declarative YAML that says which Debian packages and set-up make an image."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labyard.errors import ManifestError, NotFound
from labyard.manifest.source import read_yaml

RECIPES_DIR = Path(__file__).parent / "recipes"
BUILDER_VERSION = "1"
"""Bumped when the way recipes are built changes, so every cached image is rebuilt."""


class MachineNeeds(BaseModel):
    """What a machine of this image needs from the runtime beyond the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    volumes: list[str] = []
    """Paths that live on the machine's disk directly, not on overlayfs (e.g. /var/lib/docker)."""


class Mirror(BaseModel):
    """Another distribution's archive (e.g. Ubuntu's) for mmdebstrap; Debian's by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://\S+$")
    keyring: str
    """The archive's signing keyring on the build host, e.g.
    /usr/share/keyrings/ubuntu-archive-keyring.gpg (Debian's `ubuntu-keyring` package)."""
    components: list[str] = ["main"]


class BuildInput(BaseModel):
    """A file the build needs from outside the Debian archive (k3s's binary, say): pinned by
    URL and SHA-256, downloaded at build time or given as a local file
    (`labyard image build NAME --file NAME=PATH`), and placed at `path` in the image."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,63}$")
    url: str = Field(pattern=r"^https?://\S+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    path: str = Field(pattern=r"^/\S+$")
    mode: str = Field("0644", pattern=r"^0?[0-7]{3,4}$")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")
    description: str = ""
    extends: str | None = None
    suite: str | None = None
    """The distribution release; the recipe it extends decides when left out (bookworm at
    the root)."""
    mirror: Mirror | None = None
    """Another distribution's archive; the one it extends decides when left out."""
    variant: str = "minbase"
    packages: list[str] = []
    setup: str = ""
    """Shell script run inside the new root filesystem (after the parent's)."""
    machine: MachineNeeds = MachineNeeds()
    inputs: list[BuildInput] = []
    """Files from outside the archive, placed before `setup` runs."""


class ResolvedRecipe(BaseModel):
    """A recipe with everything it extends folded in: what is actually built."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    suite: str
    variant: str
    packages: list[str]
    setup_scripts: list[str]
    machine: MachineNeeds
    mirror: Mirror | None = None
    inputs: list[BuildInput] = []

    @property
    def digest(self) -> str:
        """Content hash: an image is rebuilt exactly when this changes."""
        recipe = self.model_dump(mode="json")
        if recipe["mirror"] is None:
            del recipe["mirror"]  # Debian's: hashed as before mirrors could be named
        if not recipe["inputs"]:
            del recipe["inputs"]  # likewise, as before recipes could have inputs
        payload = json.dumps([BUILDER_VERSION, recipe], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def recipe_names(recipes_dir: Path = RECIPES_DIR) -> list[str]:
    return sorted(p.stem for p in recipes_dir.glob("*.yaml"))


def load_recipe(name: str, recipes_dir: Path = RECIPES_DIR) -> Recipe:
    path = recipes_dir / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(recipe_names(recipes_dir))
        raise NotFound(f"no image recipe {name!r} (known: {known})")
    source = read_yaml(path)
    try:
        recipe = Recipe.model_validate(source.data)
    except ValidationError as exc:
        raise source.errors_from(exc) from exc
    if recipe.name != name:
        raise ManifestError([source.error(("name",), f"must be {name!r}, the file's name")])
    return recipe


def resolve(name: str, recipes_dir: Path = RECIPES_DIR) -> ResolvedRecipe:
    chain: list[Recipe] = []
    current: str | None = name
    while current is not None:
        if any(r.name == current for r in chain):
            raise ManifestError([f"{recipes_dir / name}.yaml: extends: cycle through {current!r}"])
        chain.append(load_recipe(current, recipes_dir))
        current = chain[-1].extends
    chain.reverse()
    packages: list[str] = []
    for recipe in chain:
        packages += [p for p in recipe.packages if p not in packages]
    last = chain[-1]
    return ResolvedRecipe(
        name=last.name,
        description=last.description,
        suite=next((r.suite for r in reversed(chain) if r.suite), "bookworm"),
        variant=chain[0].variant,
        packages=packages,
        setup_scripts=[r.setup for r in chain if r.setup.strip()],
        machine=last.machine,
        mirror=next((r.mirror for r in reversed(chain) if r.mirror), None),
        inputs=[i for r in chain for i in r.inputs],
    )
