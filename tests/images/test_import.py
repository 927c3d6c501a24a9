"""`labyard image import`: `docker save` archives and OCI layouts become machine images, layer
by layer with whiteouts, owners, modes and xattrs; what cannot boot, and archives that try
to write outside the image, are refused with nothing left behind."""

from __future__ import annotations

import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from labyard.errors import Conflict, ImageBuildFailed, InvalidInput, NotFound
from labyard.images import find_image, list_images, remove_image
from labyard.images.imports import import_image
from labyard.settings import Settings
from tests.conftest import IMAGES_DIR, REPO, Starter
from tests.images.archive_files import (
    directory,
    docker_archive,
    member,
    members_layer,
    oci_layout,
    rootfs_layer,
    symlink,
)

LINUX = find_image(IMAGES_DIR, "linux")


@pytest.fixture(scope="module")
def base_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built `linux` image's root filesystem as one layer (xattrs, numeric owners)."""
    return rootfs_layer(LINUX.rootfs, tmp_path_factory.mktemp("base") / "layer.tar")


def leftovers(images_dir: Path, name: str) -> list[str]:
    return sorted(
        p.name for p in images_dir.iterdir() if name in p.name and not p.name.endswith(".lock")
    )


@pytest.fixture
def images(tmp_path: Path) -> Path:
    path = tmp_path / "images"
    path.mkdir()
    return path


def test_docker_save_archive_with_a_second_layer(
    images: Path, base_layer: Path, tmp_path: Path
) -> None:
    top = members_layer(
        [
            member("etc/.wh.motd"),  # removes /etc/motd of the layer below
            directory("usr/share/doc"),
            member("usr/share/doc/.wh..wh..opq"),  # empties it of the base's docs
            member("usr/share/doc/mine.txt", b"kept\n"),
            member("root/added", b"from the top layer\n", uid=1000, gid=1000, mode=0o640),
            member("usr/local/bin/tool", b"#!/bin/sh\n", mode=0o4755),
            member("root/tagged", b"x", pax_headers={"SCHILY.xattr.user.labyard": "yes"}),
            member("root/link", None, type=tarfile.LNKTYPE, linkname="root/added"),
        ],
        tmp_path / "top.tar",
        gzipped=True,
    )
    archive = docker_archive([base_layer, top], tmp_path / "image.tar")
    image = import_image(images, "mine", archive)
    root = image.rootfs
    assert image.origin == "import" and image.ssh and image.current
    assert not (root / "etc/motd").exists() and (root / "etc/passwd").is_file()
    assert [p.name for p in (root / "usr/share/doc").iterdir()] == ["mine.txt"]
    added = (root / "root/added").stat()
    assert (added.st_uid, added.st_gid, added.st_mode & 0o7777) == (1000, 1000, 0o640)
    assert (root / "usr/local/bin/tool").stat().st_mode & 0o7777 == 0o4755
    assert os.getxattr(root / "root/tagged", "user.labyard") == b"yes"
    assert (root / "root/link").stat().st_ino == added.st_ino
    assert (root / "usr/bin/sudo").stat().st_mode & 0o4000  # the base's setuid bit kept
    assert list((root / "etc/ssh").glob("ssh_host_*")) == []  # each machine gets its own
    assert find_image(images, "mine").digest == image.digest
    assert leftovers(images, "mine") == [f"mine-{image.digest}"]


def test_oci_layout_directory(images: Path, base_layer: Path, tmp_path: Path) -> None:
    top = members_layer([member("srv/hello", b"hi\n")], tmp_path / "top.tar")
    layout = oci_layout([base_layer, top], tmp_path / "layout")
    image = import_image(images, "from-oci", layout)
    assert (image.rootfs / "srv/hello").read_text() == "hi\n"
    assert image.recipe.machine.volumes == []


def refused(images: Path, name: str, archive: Path) -> str:
    with pytest.raises(InvalidInput) as refusal:
        import_image(images, name, archive)
    assert leftovers(images, name) == [], "a refused import left something behind"
    return refusal.value.message


def boot_files(sshd: bool) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    files = [
        member("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        member("lib/systemd/systemd", b"\x7fELF", mode=0o755),
        symlink("sbin/init", "/lib/systemd/systemd"),
    ]
    return files + ([member("usr/sbin/sshd", b"\x7fELF", mode=0o755)] if sshd else [])


def test_no_systemd_is_refused(images: Path, tmp_path: Path) -> None:
    layer = members_layer(
        [member("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"), member("usr/sbin/sshd", b"x")],
        tmp_path / "l.tar",
    )
    message = refused(images, "nosystemd", docker_archive([layer], tmp_path / "a.tar"))
    assert "systemd as /sbin/init" in message and "sshd" not in message


def test_no_sshd_is_refused(images: Path, tmp_path: Path) -> None:
    layer = members_layer(boot_files(sshd=False), tmp_path / "l.tar")
    message = refused(images, "nosshd", docker_archive([layer], tmp_path / "a.tar"))
    assert "an SSH server, /usr/sbin/sshd" in message and "systemd" not in message


def test_declared_no_ssh_is_kept_but_never_starts(images: Path, tmp_path: Path) -> None:
    layer = members_layer(boot_files(sshd=False), tmp_path / "l.tar")
    archive = docker_archive([layer], tmp_path / "a.tar", labels={"labyard.no-ssh": "true"})
    image = import_image(images, "quiet", archive)
    assert not image.ssh and [i.name for i in list_images(images)] == ["quiet"]
    with pytest.raises(NotFound, match=r"declares itself no-ssh.*only over SSH"):
        find_image(images, "quiet")


def test_climbing_out_is_refused(images: Path, tmp_path: Path) -> None:
    outside = images.parent / "escaped"
    layer = members_layer(
        [*boot_files(sshd=True), member("../../../escaped", b"pwned")], tmp_path / "l.tar"
    )
    message = refused(images, "climber", docker_archive([layer], tmp_path / "a.tar"))
    assert "climbs out of the root filesystem" in message
    assert not outside.exists()


def test_symlinks_lead_nowhere_outside(images: Path, tmp_path: Path) -> None:
    """A symlink to a host path, then a file written through it: it lands inside the image."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host's")
    first = members_layer(
        [*boot_files(sshd=True), symlink("etc/evil", str(outside))], tmp_path / "1.tar"
    )
    hard = member("etc/hard", None, type=tarfile.LNKTYPE, linkname="etc/evil/secret")
    second = members_layer([member("etc/evil/planted", b"x"), hard], tmp_path / "2.tar")
    with pytest.raises(InvalidInput, match=r"hard link 'etc/hard' .* not in the image"):
        import_image(images, "linker", docker_archive([first, second], tmp_path / "a.tar"))
    assert [p.name for p in outside.iterdir()] == ["secret"]
    assert leftovers(images, "linker") == []
    second = members_layer([member("etc/evil/planted", b"x")], tmp_path / "3.tar")
    image = import_image(images, "linker", docker_archive([first, second], tmp_path / "b.tar"))
    assert [p.name for p in outside.iterdir()] == ["secret"]
    assert (image.rootfs / str(outside).lstrip("/") / "planted").read_bytes() == b"x"


def test_names_are_checked(images: Path, tmp_path: Path) -> None:
    with pytest.raises(Conflict, match="is a recipe's"):
        import_image(images, "linux", tmp_path)
    with pytest.raises(InvalidInput, match="image name 'Bad_Name'"):
        import_image(images, "Bad_Name", tmp_path)
    message = refused(images, "empty", tmp_path)
    assert "neither a `docker save` archive" in message


def test_dockerfile_build_without_docker_or_buildah(settings: Settings, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    env = {
        "PATH": str(tmp_path / "no-tools"),
        "LABYARD_DATA_DIR": str(settings.data_dir),
        "LABYARD_IMAGES_DIR": str(tmp_path / "images"),
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [
            str(REPO / ".venv/bin/labyard"),
            "image",
            "build",
            "mine",
            "--dockerfile",
            str(dockerfile),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == ImageBuildFailed.exit_code, result.stderr
    assert "needs Docker (with a running daemon) or buildah" in result.stderr
    assert "labyard image import mine ARCHIVE" in result.stderr


@pytest.fixture
def imported_linux(base_layer: Path, tmp_path: Path) -> Iterator[str]:
    name = f"test-import-{os.getpid()}"
    top = members_layer([member("root/imported.txt", b"imported\n")], tmp_path / "top.tar")
    import_image(IMAGES_DIR, name, docker_archive([base_layer, top], tmp_path / "image.tar"))
    yield name
    remove_image(IMAGES_DIR, name)


async def test_an_imported_image_starts_as_a_machine(imported_linux: str, start: Starter) -> None:
    manifest = (
        f"kind: playground\nname: imported\nmachines:\n  - name: box\n    image: {imported_linux}\n"
    )
    playground = await start(manifest)
    command = "cat /root/imported.txt; systemctl is-system-running --wait"
    _, out, err = await start.exec(playground, command, timeout=120)
    imported, state = out.split()
    assert imported == "imported" and state in ("running", "degraded"), (out, err)
