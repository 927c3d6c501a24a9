"""Save-as and fork on this host: machines' writable layers merged into images (the local
driver's `Snapshots` capability; images/saving.py does the merging, snapshot.py the holding
still)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from labyard.errors import NotFound
from labyard.images import Image, find_image, remove_image
from labyard.images.saving import image_from_layer
from labyard.images.store import image_dir_of
from labyard.runtime.local import snapshot
from labyard.runtime.local.state import Recorded
from labyard.settings import Settings


def _base(images_dir: Path, recorded: Recorded, machine: str) -> Image:
    """The exact build the machine runs on (not a newer build of the name)."""
    build = recorded.image(machine)
    if not build:
        raise NotFound(f"machine {machine!r} is not part of the playground")
    return image_dir_of(images_dir, build) or find_image(images_dir, build.rsplit("-", 1)[0])


def save_images(
    settings: Settings,
    playground_id: str,
    recorded: Recorded,
    images: dict[str, str],
    *,
    running: bool,
    owner: str,
    description: str,
) -> None:
    bases = {machine: _base(settings.images_dir, recorded, machine) for machine in images}
    made: list[str] = []
    try:
        with snapshot.machine_layers(settings, playground_id, list(images), running) as layers:
            for machine, image in images.items():
                upper, id_start = layers[machine]
                image_from_layer(
                    settings.images_dir,
                    image,
                    bases[machine],
                    upper,
                    id_start,
                    owner=owner,
                    origin="saved",
                    description=f"machine {machine} of {description}",
                )
                made.append(image)
    except BaseException:
        remove_images(settings.images_dir, made)  # nothing half-saved is left
        raise


def remove_images(images_dir: Path, images: list[str]) -> None:
    for image in images:
        with contextlib.suppress(NotFound):  # removed by hand already
            remove_image(images_dir, image)
