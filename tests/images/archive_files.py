"""Container image archives made here, as `docker save` and OCI tools write them: layers
from a real root filesystem (GNU tar with xattrs) or from hand-made members."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

Member = tuple[tarfile.TarInfo, bytes | None]


def rootfs_layer(rootfs: Path, out: Path) -> Path:
    subprocess.run(
        [
            "tar",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-C",
            str(rootfs),
            "-cf",
            str(out),
            ".",
        ],
        check=True,
    )
    return out


def member(name: str, data: bytes | None = b"", **fields: object) -> Member:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    if data is not None and info.type == tarfile.REGTYPE:
        info.size = len(data)
    return info, data


def directory(name: str, mode: int = 0o755) -> Member:
    return member(name, None, type=tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> Member:
    return member(name, None, type=tarfile.SYMTYPE, linkname=target)


def members_layer(members: list[Member], out: Path, gzipped: bool = False) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    content = gzip.compress(buffer.getvalue()) if gzipped else buffer.getvalue()
    out.write_bytes(content)
    return out


def _config(labels: dict[str, str] | None) -> bytes:
    return json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {"Labels": labels or {}}}
    ).encode()


def docker_archive(layers: list[Path], out: Path, labels: dict[str, str] | None = None) -> Path:
    """A `docker save` (legacy layout) archive of one image with these layers."""
    config = _config(labels)
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    with tarfile.open(out, "w") as tar:
        names = []
        for index, layer in enumerate(layers):
            name = f"layer{index}/layer.tar"
            tar.add(layer, name)
            names.append(name)
        _add_bytes(tar, config_name, config)
        manifest = [{"Config": config_name, "RepoTags": ["test:latest"], "Layers": names}]
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
    return out


def oci_layout(layers: list[Path], out: Path, labels: dict[str, str] | None = None) -> Path:
    """An OCI image layout directory of one image with these layers."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(content: bytes) -> str:
        digest = hashlib.sha256(content).hexdigest()
        (blobs / digest).write_bytes(content)
        return f"sha256:{digest}"

    config = _config(labels)
    layer_descriptors = [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": blob(p.read_bytes()),
            "size": p.stat().st_size,
        }
        for p in layers
    ]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob(config),
                "size": len(config),
            },
            "layers": layer_descriptors,
        }
    ).encode()
    index = {"schemaVersion": 2, "manifests": [{"digest": blob(manifest), "size": len(manifest)}]}
    (out / "index.json").write_text(json.dumps(index))
    (out / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return out


def _add_bytes(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    tar.addfile(info, io.BytesIO(content))
