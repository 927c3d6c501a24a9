"""A machine's writable layer (overlayfs upper directory) merged over the image it ran on:
a new image with everything its learner installed or wrote (save-as and fork).

The base image's files are hard-linked into the new one (images never change, and the
layer is applied by replacing files, never writing into them), then the layer is applied
with layers.py, its overlayfs whiteouts (0/0 character devices) and opaque directories
(`trusted.overlay.opaque`) turned into their OCI forms. The layer's files belong to the
machine's host ids; they are shifted back to the image's (0-based) ids.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from labyard.errors import Conflict, ImageBuildFailed
from labyard.images.imports import land, prepare_for_machines, staging_dir
from labyard.images.layers import OPAQUE, WHITEOUT, LayerWriter, Opener
from labyard.images.store import Image, list_images

RANGE = 65536
"""Host ids per machine (the local driver's): a layer's owner is its range's start + the id."""
_OVERLAY = "trusted.overlay."
_SKIP = {"etc/ssh/ssh_host_ed25519_key", "root/.ssh/authorized_keys"}
"""Written into every machine at start: the old playground's keys stay out of the image."""


def _xattrs(path: str) -> dict[str, str]:
    found = {}
    for key in os.listxattr(path, follow_symlinks=False):
        if key.startswith(_OVERLAY):
            if key[len(_OVERLAY) :] in ("redirect", "metacopy"):
                raise Conflict(f"{path}: the layer uses overlayfs {key}; it cannot be saved")
            continue
        value = os.getxattr(path, key, follow_symlinks=False)
        found[f"SCHILY.xattr.{key}"] = value.decode("utf-8", "surrogateescape")
    return found


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OVERLAY + "opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _shift(host_id: int, start: int) -> int:
    return host_id - start if start <= host_id < start + RANGE else host_id


def _info(path: str, name: str, st: os.stat_result, start: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.uid, info.gid = _shift(st.st_uid, start), _shift(st.st_gid, start)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    info.pax_headers = _xattrs(path)
    return info


def upper_entries(upper: Path, start: int) -> Iterator[tuple[tarfile.TarInfo, Opener]]:
    """The upper directory as layer entries, parents before children."""
    links: dict[tuple[int, int], str] = {}

    def none() -> None:
        return None

    for directory, dirs, files in os.walk(upper):
        dirs.sort()
        relative = os.path.relpath(directory, upper)
        prefix = "" if relative == "." else relative + "/"
        for entry in sorted(dirs) + sorted(files):
            path = os.path.join(directory, entry)
            name = prefix + entry
            st = os.lstat(path)
            if name in _SKIP:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                yield tarfile.TarInfo(prefix + WHITEOUT + entry), none
                continue
            info = _info(path, name, st, start)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                yield info, none
                if _opaque(path):
                    yield tarfile.TarInfo(f"{name}/{OPAQUE}"), none
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
                yield info, none
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    info.type, info.linkname = tarfile.LNKTYPE, links[key]
                    yield info, none
                    continue
                links[key] = name
                info.type = tarfile.REGTYPE
                yield info, (lambda p=path: open(p, "rb"))  # type: ignore[misc]  # noqa: SIM115
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                yield info, none
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
                yield info, none
            # sockets: nothing to keep


def image_from_layer(
    images_dir: Path,
    name: str,
    base: Image,
    upper: Path,
    id_start: int,
    *,
    owner: str,
    origin: str,
    description: str,
) -> Image:
    """`base` with the machine's layer applied, landed as image `name` (see the docstring)."""
    with staging_dir(images_dir, name) as staging:
        rootfs = staging / "rootfs"
        copy = subprocess.run(
            ["cp", "-al", str(base.rootfs), str(rootfs)], capture_output=True, text=True
        )
        if copy.returncode != 0:
            raise ImageBuildFailed(f"cannot copy image {base.name!r}", detail=copy.stderr)
        LayerWriter(rootfs, f"machine layer {upper}").apply(upper_entries(upper, id_start))
        prepare_for_machines(rootfs)
        land(
            images_dir,
            staging,
            name,
            uuid.uuid4().hex[:16],
            origin=origin,
            description=description,
            volumes=list(base.recipe.machine.volumes),
            owner=owner,
        )
    return max((i for i in list_images(images_dir) if i.name == name), key=lambda i: i.built_at)
