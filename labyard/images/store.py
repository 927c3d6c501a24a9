"""Built images on disk: `<images_dir>/<name>-<digest>/{rootfs,image.json}`, never changed.

Most come from recipes (build.py); `image.json`'s `origin` says when one does not:
`import` (a `docker save` or OCI archive, imports.py) or `saved` (a playground's machine
saved as an image, with the `owner` who may use it). Those have no recipe: the newest
build of the name is the one machines use.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labyard.errors import Conflict, NotFound
from labyard.images.recipe import RECIPES_DIR, ResolvedRecipe, recipe_names, resolve


@dataclass(frozen=True)
class Image:
    name: str
    digest: str
    path: Path
    size_bytes: int
    built_at: str
    current: bool
    """Built from the recipe as it is now (an older build stays usable until removed)."""
    recipe: ResolvedRecipe
    origin: str = "recipe"
    """`recipe`, `import` or `saved`."""
    ssh: bool = True
    """False: the image declared itself no-ssh (it cannot start as a machine)."""
    owner: str = ""
    """A saved image's owner: nobody else's playground may use it."""

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"


def image_dir(images_dir: Path, recipe: ResolvedRecipe) -> Path:
    return images_dir / f"{recipe.name}-{recipe.digest}"


def _read(path: Path, current_digest: str | None) -> Image | None:
    try:
        meta = json.loads((path / "image.json").read_text())
    except (OSError, ValueError):
        return None  # a build that never finished, or not ours
    origin = meta.get("origin", "recipe")
    return Image(
        name=meta["name"],
        digest=meta["digest"],
        path=path,
        size_bytes=int(meta.get("size_bytes", 0)),
        built_at=meta.get("built_at", ""),
        current=meta["digest"] == current_digest or origin != "recipe",
        recipe=ResolvedRecipe.model_validate(_upgraded(meta["recipe"])),
        origin=origin,
        ssh=bool(meta.get("ssh", True)),
        owner=str(meta.get("owner", "")),
    )


def _upgraded(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe recorded by an older labyard, in today's shape (its image stays listable and
    removable). `machine.all_devices` went when machines got a fixed device set."""
    machine = {k: v for k, v in recipe.get("machine", {}).items() if k != "all_devices"}
    return {**recipe, "machine": machine}


def list_images(images_dir: Path, recipes_dir: Path = RECIPES_DIR) -> list[Image]:
    digests = {name: resolve(name, recipes_dir).digest for name in recipe_names(recipes_dir)}
    found: list[Image] = []
    for path in sorted(images_dir.glob("*-*")) if images_dir.exists() else []:
        name = path.name.rsplit("-", 1)[0]
        image = _read(path, digests.get(name))
        if image is not None:
            found.append(image)
    return found


def find_image(images_dir: Path, name: str, recipes_dir: Path = RECIPES_DIR) -> Image:
    """The image a machine of `name` uses: built from the current recipe `name`, else the
    newest import or saved image of that name; NotFound tells how to make it."""
    if name not in recipe_names(recipes_dir):
        image = _newest_without_recipe(images_dir, name)
        if image is None:
            raise NotFound(
                f"no image {name!r}: no recipe has that name, and nothing was imported as it "
                f"(`labyard image import {name} FILE`)"
            )
    else:
        recipe = resolve(name, recipes_dir)
        found = _read(image_dir(images_dir, recipe), recipe.digest)
        if found is None:
            raise NotFound(f"image {name!r} is not built; run `labyard image build {name}`")
        image = found
    if not image.ssh:
        raise NotFound(
            f"image {name!r} declares itself no-ssh: labyard reaches machines only over SSH "
            "(start readiness, terminals, exec, cp, init tasks and checks), so it cannot start "
            "as a machine; add openssh-server to it and import it again",
            reason="image_no_ssh",
        )
    return image


def image_dir_of(images_dir: Path, dirname: str) -> Image | None:
    """The image in `<images_dir>/<dirname>` (a machine's exact build), if it is there."""
    if not dirname or "/" in dirname or dirname.startswith("."):
        return None
    path = images_dir / dirname
    return _read(path, None) if path.is_dir() else None


def _newest_without_recipe(images_dir: Path, name: str) -> Image | None:
    found = [
        image
        for path in (images_dir.glob(f"{name}-*") if images_dir.exists() else [])
        if path.name.rsplit("-", 1)[0] == name
        and (image := _read(path, None)) is not None
        and image.origin != "recipe"
    ]
    return max(found, key=lambda i: i.built_at, default=None)


def _in_use(path: Path) -> bool:
    """Whether a running or stopped machine still has this image mounted: idmapped (the
    mount's root is the image's rootfs) or, from older labyards, as an overlay lower dir."""
    rootfs = f"/{path.name}/rootfs"
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            if line.split()[3].endswith(rootfs) or f"lowerdir={path}/rootfs" in line:
                return True
    return False


def remove_image(images_dir: Path, name: str) -> list[Image]:
    """Remove every build of `name`; refused while a machine is using one."""
    doomed = [i for i in list_images(images_dir) if i.name == name]
    if not doomed:
        raise NotFound(f"image {name!r} is not built")
    for image in doomed:
        if _in_use(image.path):
            raise Conflict(f"image {name!r} is in use by a playground; destroy it first")
    for image in doomed:
        shutil.rmtree(image.path)
    return doomed


class BuiltImages:
    """Image name -> owner of every image a machine can start from (current, with SSH).

    Listing reads every build's image.json and every recipe (~0.1 s): done again only when a
    build, import, save or removal changed the images directory.
    """

    def __init__(self, images_dir: Path) -> None:
        self.images_dir = images_dir
        self._cached: tuple[int, dict[str, str]] | None = None

    def __call__(self) -> dict[str, str]:
        try:
            changed = self.images_dir.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._cached is None or self._cached[0] != changed:
            found = list_images(self.images_dir)
            self._cached = (changed, {i.name: i.owner for i in found if i.ssh and i.current})
        return dict(self._cached[1])
