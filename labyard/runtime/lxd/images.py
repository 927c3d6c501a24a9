"""labyard's images as LXD images: a built recipe becomes one LXD image per server (or
cluster: members fetch it from each other themselves), keyed by its digest.

An image is uploaded at its first use: a unified tarball (`metadata.yaml` and `rootfs/`)
streamed from `tar` straight into `POST /1.0/images`, aliased `<name>-<digest>`. Saved images
(save-as, fork) are LXD images from the start, aliased by their name, with their owner in the
image's properties.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from labyard.errors import RuntimeFailure
from labyard.images import Image
from labyard.runtime.lxd.client import Lxd, LxdError

SAVED = "user.labyard.saved"
OWNER = "user.labyard.owner"
CHUNK = 1 << 20


def alias_of(image: Image) -> str:
    return f"{image.name}-{image.digest}"


async def alias_target(lxd: Lxd, alias: str) -> str | None:
    """The fingerprint `alias` points at, or None."""
    try:
        found = await lxd.get(f"/1.0/images/aliases/{alias}")
    except LxdError as exc:
        if exc.status == 404:
            return None
        raise
    return str(found["target"])


async def ensure_image(lxd: Lxd, image: Image, lock: asyncio.Lock) -> str:
    """The alias of `image` on the server, uploading it first if it is not there yet."""
    alias = alias_of(image)
    async with lock:  # one upload at a time; a concurrent start waits and finds it there
        if await alias_target(lxd, alias) is None:
            fingerprint = await _upload(lxd, image)
            try:
                await lxd.request(
                    "POST", "/1.0/images/aliases", body={"name": alias, "target": fingerprint}
                )
            except LxdError as exc:
                if exc.status != 409:  # another labyard process aliased it meanwhile
                    raise
    return alias


async def _upload(lxd: Lxd, image: Image) -> str:
    with tempfile.TemporaryDirectory(prefix="labyard-lxd-image-") as meta_dir:
        (Path(meta_dir) / "metadata.yaml").write_text(
            "architecture: x86_64\n"
            f"creation_date: {int(time.time())}\n"
            "properties:\n"
            f"  description: labyard {image.name} {image.digest}\n"
            f"  name: {image.name}\n"
        )
        tar = await asyncio.create_subprocess_exec(
            *("tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cf", "-"),
            *("-C", str(image.path), "rootfs", "-C", meta_dir, "metadata.yaml"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert tar.stdout is not None
        try:
            result = await lxd.request(
                "POST",
                "/1.0/images",
                content=_chunks(tar.stdout),
                headers={
                    "Content-Type": "application/octet-stream",
                    **await lxd.headers(public="0"),
                },
            )
        finally:
            if tar.returncode is None:
                tar.kill()
            _, errors = await tar.communicate()
        if tar.returncode != 0:
            raise RuntimeFailure(
                f"cannot read image {image.name} at {image.path}", detail=errors.decode()
            )
    return str((result or {}).get("fingerprint", ""))


async def _chunks(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await stream.read(CHUNK):
        yield chunk


async def saved_images(lxd: Lxd) -> dict[str, str]:
    """Saved image name -> its owner."""
    found = await lxd.get("/1.0/images", recursion="1")
    return {
        alias["name"]: str(image.get("properties", {}).get(OWNER, ""))
        for image in found
        if image.get("properties", {}).get(SAVED) == "true"
        for alias in image.get("aliases", [])
    }
