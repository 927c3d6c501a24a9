"""Machine images from your own files: a `docker save` archive or an OCI image layout.

The layers are applied in order (layers.py) into a staging directory beside the images;
the image then lands under its final name in one rename, or, refused or failed, nothing of
it is left. An image must be able to boot as a machine: systemd as /sbin/init and an sshd
(or, declared no-ssh, it is kept but never starts: see `find_image`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from labyard.errors import Conflict, InvalidInput
from labyard.images.archives import open_archive, open_layer
from labyard.images.layers import LayerWriter, resolve_inside, tar_entries
from labyard.images.recipe import RECIPES_DIR, MachineNeeds, ResolvedRecipe, recipe_names
from labyard.images.store import Image, find_image

Progress = Callable[[str], None]
NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
NO_SSH_LABEL = "labyard.no-ssh"
"""An image config label (`LABEL labyard.no-ssh=true`): the image has no sshd on purpose."""
VOLUMES_LABEL = "labyard.volumes"
"""Comma-separated paths that live on the machine's own disk (like a recipe's volumes)."""


def _quiet(_: str) -> None:
    pass


def check_name(name: str, recipes_dir: Path = RECIPES_DIR) -> None:
    if not NAME.match(name):
        raise InvalidInput(
            f"image name {name!r}: lower-case letters, digits and '-', starting with a letter, "
            "at most 32 characters"
        )
    if name in recipe_names(recipes_dir):
        raise Conflict(f"image name {name!r} is a recipe's; choose another")


def missing_for_boot(rootfs: Path, ssh: bool = True) -> list[str]:
    """What keeps this root filesystem from booting as a labyard machine (empty: nothing)."""
    missing = []
    init = resolve_inside(rootfs, ["sbin", "init"], "image")
    if not init.is_file() or init.name != "systemd":
        missing.append("systemd as /sbin/init (install systemd and systemd-sysv)")
    passwd = resolve_inside(rootfs, ["etc", "passwd"], "image")
    if not passwd.is_file() or not passwd.read_text(errors="replace").startswith("root:"):
        missing.append("a root user in /etc/passwd")
    if ssh and not any(
        resolve_inside(rootfs, p.strip("/").split("/"), "image").is_file()
        for p in ("/usr/sbin/sshd", "/sbin/sshd")
    ):
        missing.append("an SSH server, /usr/sbin/sshd (install openssh-server)")
    return missing


def prepare_for_machines(rootfs: Path) -> None:
    """What every labyard machine expects (as the linux recipe's set-up does): its own host
    key at start (none baked in), the key it is given used, its own machine id."""
    ssh_dir = resolve_inside(rootfs, ["etc", "ssh"], "image")
    for key in ssh_dir.glob("ssh_host_*") if ssh_dir.is_dir() else []:
        key.unlink()
    conf_dir = ssh_dir / "sshd_config.d"
    if conf_dir.is_dir() and not (conf_dir / "labyard.conf").exists():
        (conf_dir / "labyard.conf").write_text(
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        )
    machine_id = resolve_inside(rootfs, ["etc", "machine-id"], "image")
    if machine_id.parent.is_dir():
        machine_id.unlink(missing_ok=True)
        machine_id.touch()


def directory_size(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=False)
    return int((out.stdout.split() or ["0"])[0])


@contextmanager
def staging_dir(images_dir: Path, name: str) -> Iterator[Path]:
    """A directory beside the images, removed unless `land` moved it into place."""
    images_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=images_dir))
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def land(
    images_dir: Path,
    staging: Path,
    name: str,
    digest: str,
    *,
    origin: str,
    description: str,
    volumes: list[str],
    ssh: bool = True,
    owner: str = "",
) -> Path:
    """Write image.json and rename the staging directory to `<name>-<digest>`."""
    recipe = ResolvedRecipe(
        name=name,
        description=description,
        suite="",
        variant=origin,
        packages=[],
        setup_scripts=[],
        machine=MachineNeeds(volumes=volumes),
    )
    meta = {
        "name": name,
        "digest": digest,
        "origin": origin,
        "ssh": ssh,
        "owner": owner,
        "built_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "size_bytes": directory_size(staging / "rootfs"),
        "recipe": recipe.model_dump(mode="json"),
    }
    target = images_dir / f"{name}-{digest}"
    if (target / "image.json").exists():
        return target  # the same image, already here (and maybe in use): keep it
    if target.exists():
        shutil.rmtree(target)  # a landing that never finished
    (staging / "image.json").write_text(json.dumps(meta, indent=2))
    staging.rename(target)
    return target


def import_image(
    images_dir: Path,
    name: str,
    archive: Path,
    *,
    no_ssh: bool = False,
    progress: Progress = _quiet,
) -> Image:
    """Make machine image `name` from an archive (see the module docstring)."""
    check_name(name)
    started = time.monotonic()
    with staging_dir(images_dir, name) as staging, open_archive(archive) as (image, source):
        rootfs = staging / "rootfs"
        writer = LayerWriter(rootfs, str(archive))
        for index, layer in enumerate(image.layers):
            progress(f"{name}: layer {index + 1} of {len(image.layers)}")
            with open_layer(source, layer) as tar:
                writer.apply(tar_entries(tar))
        labels = image.labels
        ssh = not (no_ssh or labels.get(NO_SSH_LABEL, "").lower() in ("1", "true", "yes"))
        missing = missing_for_boot(rootfs, ssh)
        if missing:
            raise InvalidInput(
                f"{archive} cannot boot as a labyard machine; it lacks: " + "; ".join(missing)
            )
        prepare_for_machines(rootfs)
        volumes = [v.strip() for v in labels.get(VOLUMES_LABEL, "").split(",") if v.strip()]
        digest = hashlib.sha256(f"{image.digest}:{ssh}:{volumes}".encode()).hexdigest()[:16]
        os.chmod(rootfs, 0o755)
        land(
            images_dir,
            staging,
            name,
            digest,
            origin="import",
            description=f"imported from {archive.name}",
            volumes=volumes,
            ssh=ssh,
        )
    progress(f"{name}: imported in {time.monotonic() - started:.0f}s ({digest})")
    if not ssh:
        return _no_ssh(images_dir, name)
    return find_image(images_dir, name)


def _no_ssh(images_dir: Path, name: str) -> Image:
    from labyard.images.store import list_images

    return max((i for i in list_images(images_dir) if i.name == name), key=lambda i: i.built_at)
