"""`labyard image build NAME --dockerfile PATH`: build with the host's Docker or buildah,
export the result as an archive, import it (imports.py). Nothing is pulled by labyard
itself: the Dockerfile's `FROM` is whatever that builder can find."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from labyard.errors import ImageBuildFailed, InvalidInput
from labyard.images.imports import Progress, _quiet, check_name, import_image
from labyard.images.store import Image


def builder() -> str | None:
    """`docker` when a Docker daemon answers, else `buildah` when installed, else None."""
    if shutil.which("docker") is not None:
        probe = subprocess.run(["docker", "info"], capture_output=True, check=False)
        if probe.returncode == 0:
            return "docker"
    return "buildah" if shutil.which("buildah") is not None else None


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageBuildFailed(
            f"{what} failed ({command[0]} exit {result.returncode}): "
            + (result.stderr.strip().splitlines() or [""])[-1],
            detail=result.stderr[-4000:],
        )


def build_from_dockerfile(
    images_dir: Path,
    name: str,
    dockerfile: Path,
    *,
    no_ssh: bool = False,
    progress: Progress = _quiet,
) -> Image:
    """Build the Dockerfile (its directory is the build context) and import the image."""
    check_name(name)
    if not dockerfile.is_file():
        raise InvalidInput(f"{dockerfile}: no such Dockerfile")
    tool = builder()
    if tool is None:
        raise ImageBuildFailed(
            "building from a Dockerfile needs Docker (with a running daemon) or buildah on "
            "this host, and neither is there; build the image elsewhere, `docker save` it and "
            f"run `labyard image import {name} ARCHIVE`"
        )
    tag = f"localhost/labyard-build-{name}:{uuid.uuid4().hex[:12]}"
    context = str(dockerfile.parent)
    with tempfile.TemporaryDirectory(dir=images_dir if images_dir.exists() else None) as work:
        archive = Path(work) / "image.tar"
        progress(f"{name}: building with {tool}")
        try:
            if tool == "docker":
                _run(["docker", "build", "-t", tag, "-f", str(dockerfile), context], "docker build")
                _run(["docker", "save", "-o", str(archive), tag], "docker save")
            else:
                _run(["buildah", "bud", "-t", tag, "-f", str(dockerfile), context], "buildah bud")
                _run(["buildah", "push", tag, f"oci-archive:{archive}"], "buildah push")
        finally:
            subprocess.run([tool, "rmi", tag], capture_output=True, check=False)
        return import_image(images_dir, name, archive, no_ssh=no_ssh, progress=progress)
