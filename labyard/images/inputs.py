"""A recipe's build inputs (files from outside the Debian archive, pinned by SHA-256):
given as local files, or downloaded from their URL. Either way the SHA-256 must match."""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from labyard.errors import ImageBuildFailed, InvalidInput
from labyard.images.recipe import BuildInput, ResolvedRecipe

DOWNLOAD_TIMEOUT_S = 60.0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(item: BuildInput, target: Path) -> str | None:
    """None when downloaded, else why not."""
    try:
        with (
            urllib.request.urlopen(item.url, timeout=DOWNLOAD_TIMEOUT_S) as answer,
            open(target, "wb") as out,
        ):
            shutil.copyfileobj(answer, out, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))
    return None


def gather_inputs(
    recipe: ResolvedRecipe, files: dict[str, Path], workdir: Path, progress: Callable[[str], None]
) -> dict[str, Path]:
    """Input name -> a local file with the pinned content; refused with what to do."""
    found: dict[str, Path] = {}
    workdir.mkdir(parents=True, exist_ok=True)
    for item in recipe.inputs:
        given = files.get(item.name)
        if given is None:
            progress(f"{recipe.name}: downloading {item.name} from {item.url}")
            given = workdir / item.name
            failure = _download(item, given)
            if failure is not None:
                raise ImageBuildFailed(
                    f"image {recipe.name!r} needs {item.name} ({item.url}, sha256 "
                    f"{item.sha256}), which cannot be downloaded here ({failure}); fetch it "
                    f"elsewhere and give it: labyard image build {recipe.name} "
                    + " ".join(f"--file {i.name}=PATH" for i in recipe.inputs)
                )
        elif not given.is_file():
            raise InvalidInput(f"--file {item.name}={given}: no such file")
        actual = _sha256(given)
        if actual != item.sha256:
            raise InvalidInput(
                f"{given}: sha256 {actual} is not the {item.sha256} that image "
                f"{recipe.name!r} pins for {item.name} ({item.url})"
            )
        found[item.name] = given
    return found
