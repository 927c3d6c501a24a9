"""Reading container image archives: `docker save` tars and OCI image layouts (a tar or a
directory). What comes out: the image's config (labels, entrypoint) and its layers, in the
order they apply, each opened as a tar stream (gzip, bzip2, xz or zstd compressed, or not).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from labyard.errors import InvalidInput

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class ImageArchive:
    config: dict[str, Any]
    """The image config (`config.Labels`, `config.Entrypoint`, ...)."""
    layers: list[str]
    """Paths of the layer blobs inside the archive, lowest first."""
    digest: str
    """sha256 of the config: the same image imported twice has the same digest."""

    @property
    def labels(self) -> dict[str, str]:
        labels = (self.config.get("config") or {}).get("Labels") or {}
        return {str(k): str(v) for k, v in labels.items()}


class _Source:
    """Files of an archive by their path in it, whether a tar or a directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        if path.is_file():
            try:
                self.tar = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by close())
            except (tarfile.TarError, OSError) as exc:
                raise InvalidInput(f"{path}: not a tar archive ({exc})") from exc
        elif not path.is_dir():
            raise InvalidInput(f"{path}: no such file or directory")

    def open(self, name: str) -> IO[bytes] | None:
        name = str(PurePosixPath(name))
        if ".." in PurePosixPath(name).parts or name.startswith("/"):
            raise InvalidInput(f"{self.path}: names {name!r}, outside the archive")
        if self.tar is None:
            file = self.path / name
            return open(file, "rb") if file.is_file() and not file.is_symlink() else None
        try:
            member = self.tar.getmember(name)
        except KeyError:
            try:
                member = self.tar.getmember(f"./{name}")
            except KeyError:
                return None
        return self.tar.extractfile(member) if member.isreg() else None

    def json(self, name: str) -> Any:
        stream = self.open(name)
        if stream is None:
            return None
        with stream:
            try:
                return json.load(stream)
            except ValueError as exc:
                raise InvalidInput(f"{self.path}: {name} is not JSON") from exc

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def _blob(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or len(value) != 64 or not value.isalnum():
        raise InvalidInput(f"unsupported blob digest {digest!r}")
    return f"blobs/sha256/{value}"


def _from_docker(source: _Source, manifest: Any) -> ImageArchive:
    if not isinstance(manifest, list) or len(manifest) != 1:
        raise InvalidInput(f"{source.path}: manifest.json must describe exactly one image")
    entry = manifest[0]
    config = source.json(entry["Config"]) or {}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    return ImageArchive(config, list(entry["Layers"]), digest)


def _from_oci(source: _Source, index: Any) -> ImageArchive:
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise InvalidInput(
            f"{source.path}: index.json lists {len(manifests)} images; import one at a time"
        )
    manifest = source.json(_blob(manifests[0]["digest"])) or {}
    if "manifests" in manifest:  # an image index (several platforms): the amd64 one
        chosen = [
            m for m in manifest["manifests"] if m.get("platform", {}).get("architecture") == "amd64"
        ]
        if not chosen:
            raise InvalidInput(f"{source.path}: no linux/amd64 image in the index")
        manifest = source.json(_blob(chosen[0]["digest"])) or {}
    config_digest = manifest["config"]["digest"]
    config = source.json(_blob(config_digest)) or {}
    layers = [_blob(layer["digest"]) for layer in manifest.get("layers", [])]
    return ImageArchive(config, layers, config_digest.partition(":")[2])


@contextlib.contextmanager
def open_archive(path: Path) -> Iterator[tuple[ImageArchive, _Source]]:
    """The image in a `docker save` tar or an OCI layout; InvalidInput says what is wrong."""
    source = _Source(path)
    try:
        try:
            docker = source.json("manifest.json")
            if docker is not None:
                yield _from_docker(source, docker), source
                return
            index = source.json("index.json")
            if index is not None:
                yield _from_oci(source, index), source
                return
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"{path}: an image manifest lacks {exc}") from exc
        raise InvalidInput(
            f"{path}: neither a `docker save` archive (manifest.json) nor an OCI image "
            "layout (index.json)"
        )
    finally:
        source.close()


@contextlib.contextmanager
def open_layer(source: _Source, name: str) -> Iterator[tarfile.TarFile]:
    """One layer blob as a tar stream, decompressed."""
    blob = source.open(name)
    if blob is None:
        raise InvalidInput(f"{source.path}: layer {name} is missing")
    with blob:
        head = blob.read(4)
        blob.seek(0)
        if head == _ZSTD_MAGIC:
            raise InvalidInput(
                f"{source.path}: layer {name} is zstd-compressed; export the image with "
                "gzip or uncompressed layers (`docker save` does)"
            )
        try:
            tar = tarfile.open(fileobj=blob, mode="r|*")  # noqa: SIM115 (the `with` below)
        except tarfile.TarError as exc:
            raise InvalidInput(f"{source.path}: layer {name} is not a tar stream") from exc
        with tar:
            yield tar
