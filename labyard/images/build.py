"""Build a recipe into a root filesystem with mmdebstrap; cached by the recipe's digest."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from labyard.errors import ImageBuildFailed, InvalidInput
from labyard.images.inputs import gather_inputs
from labyard.images.recipe import RECIPES_DIR, ResolvedRecipe, resolve
from labyard.images.store import Image, find_image, image_dir

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@contextmanager
def _build_lock(images_dir: Path, name: str) -> Iterator[None]:
    """One build of an image at a time on this host; a second builder waits, then finds it."""
    images_dir.mkdir(parents=True, exist_ok=True)
    with open(images_dir / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_image(
    images_dir: Path,
    name: str,
    *,
    force: bool = False,
    progress: Progress = _quiet,
    recipes_dir: Path = RECIPES_DIR,
    files: dict[str, Path] | None = None,
) -> Image:
    """Build `name` unless an image from the same recipe digest exists (or `force`).
    `files` gives the recipe's inputs as local files (by input name); the others are
    downloaded (inputs.py)."""
    recipe = resolve(name, recipes_dir)
    unknown = sorted(set(files or {}) - {i.name for i in recipe.inputs})
    if unknown:
        raise InvalidInput(
            f"image {name!r} has no build input {', '.join(map(repr, unknown))} "
            f"(its inputs: {', '.join(i.name for i in recipe.inputs) or 'none'})"
        )
    target = image_dir(images_dir, recipe)
    with _build_lock(images_dir, name):
        if (target / "image.json").exists() and not force:
            progress(f"{name}: up to date ({recipe.digest})")
            return find_image(images_dir, name, recipes_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=images_dir))
        try:
            started = time.monotonic()
            inputs = gather_inputs(recipe, files or {}, staging / "inputs", progress)
            _mmdebstrap(recipe, staging / "rootfs", progress, inputs)
            shutil.rmtree(staging / "inputs", ignore_errors=True)
            _write_meta(staging, recipe)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
            progress(f"{name}: built in {time.monotonic() - started:.0f}s ({recipe.digest})")
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return find_image(images_dir, name, recipes_dir)


def _setup_hooks(
    recipe: ResolvedRecipe, workdir: Path, inputs: dict[str, Path] | None = None
) -> list[str]:
    hooks: list[str] = []
    for item in recipe.inputs:  # before the set-up scripts, which may use them
        hooks += [
            f'--customize-hook=mkdir -p "$1{Path(item.path).parent!s}"',
            f"--customize-hook=upload {(inputs or {})[item.name]} {item.path}",
            f'--customize-hook=chmod {item.mode} "$1{item.path}"',
        ]
    for i, script in enumerate(recipe.setup_scripts):
        path = workdir / f"setup-{i}.sh"
        path.write_text(script)
        hooks += [
            f"--customize-hook=upload {path} /tmp/labyard-setup.sh",
            '--customize-hook=chroot "$1" /bin/sh -e /tmp/labyard-setup.sh',
            '--customize-hook=rm -f "$1/tmp/labyard-setup.sh"',
        ]
    return hooks


def _mmdebstrap(
    recipe: ResolvedRecipe,
    rootfs: Path,
    progress: Progress,
    inputs: dict[str, Path] | None = None,
) -> None:
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildFailed("mmdebstrap is not installed; run scripts/setup.sh first")
    with tempfile.TemporaryDirectory() as workdir:
        command = [
            "mmdebstrap",
            f"--variant={recipe.variant}",
            f"--include={','.join(recipe.packages)}",
            "--aptopt=Acquire::Retries 3",
            *_setup_hooks(recipe, Path(workdir), inputs),
        ]
        if recipe.mirror is not None:  # another distribution's archive, with its keys
            if not Path(recipe.mirror.keyring).is_file():
                raise ImageBuildFailed(
                    f"image {recipe.name!r} needs the keyring {recipe.mirror.keyring} "
                    f"to check {recipe.mirror.url}; install it first"
                )
            command += [
                f"--keyring={recipe.mirror.keyring}",
                f"--components={','.join(recipe.mirror.components)}",
                recipe.suite,
                str(rootfs),
                recipe.mirror.url,
            ]
        else:
            command += [recipe.suite, str(rootfs)]
            mirror = os.environ.get("LABYARD_DEBIAN_MIRROR")
            if mirror:
                command.append(mirror)
        _run_streaming(command, recipe.name, progress)


def _run_streaming(command: list[str], name: str, progress: Progress) -> None:
    tail: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None  # guaranteed by stdout=PIPE
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail[-19:], line]
            if line.startswith(("I: ", "W: ", "E: ")):
                progress(f"{name}: {line[3:]}")
    if proc.returncode != 0:
        raise ImageBuildFailed(
            f"building image {name!r} failed (mmdebstrap exit {proc.returncode})",
            detail="\n".join(tail),
        )


def _write_meta(staging: Path, recipe: ResolvedRecipe) -> None:
    size = int(
        subprocess.run(
            ["du", "-sb", str(staging / "rootfs")], capture_output=True, text=True, check=False
        ).stdout.split()[0]
        or 0
    )
    meta = {
        "name": recipe.name,
        "digest": recipe.digest,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "size_bytes": size,
        "recipe": recipe.model_dump(mode="json"),
    }
    (staging / "image.json").write_text(json.dumps(meta, indent=2))
