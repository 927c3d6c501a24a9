"""The whole way from a Dockerfile to a playground, offline: inside a `docker` playground, a
base image is made from the machine's own root filesystem (`docker import`, no registry),
a Dockerfile `FROM` it adds a file, runs a command and removes one; `docker save`, then
`labyard cp` copies the archive out, `labyard image import` makes a machine image of it,
and a playground started from that image has the file, the command's output, and not the
removed file (a whiteout)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from labyard.errors import NotFound
from labyard.images import remove_image
from labyard.settings import Settings
from tests.conftest import Starter, run_cli

# The machine's root filesystem without what only dockerd needs (a smaller archive to copy).
MAKE_BASE = """set -e
tar -C / --one-file-system --numeric-owner --xattrs -c \
  --exclude=./tmp --exclude=./root/build --exclude=./usr/share/doc --exclude=./usr/share/man \
  --exclude=./usr/share/locale --exclude=./var/cache/apt --exclude=./var/lib/apt/lists \
  --exclude=./usr/bin/dockerd --exclude=./usr/bin/containerd --exclude=./usr/sbin/runc \
  --exclude=./usr/bin/containerd-shim-runc-v2 --exclude=./usr/bin/ctr . \
  | docker import - local/base >/dev/null
"""
DOCKERFILE = """FROM local/base
COPY added.txt /etc/labyard-added.txt
RUN echo made-by-run > /root/run.txt && rm /etc/motd
LABEL org.example.test=yes
"""
BUILD = """set -e
mkdir -p /root/build && cd /root/build
cat > Dockerfile <<'EOF'
{dockerfile}EOF
echo added-by-the-dockerfile > added.txt
docker build -q -t local/built . >/dev/null
docker save -o /root/built.tar local/built
"""


@pytest.fixture
def image_name(settings: Settings) -> Iterator[str]:
    name = f"test-dockerfile-{os.getpid()}"
    yield name
    with contextlib.suppress(NotFound):  # not made: the test failed before the import
        remove_image(settings.images_dir, name)


async def test_dockerfile_image_from_a_docker_playground(
    settings: Settings, start: Starter, tmp_path: Path, image_name: str
) -> None:
    docker = await start("docker")
    for step in (MAKE_BASE, BUILD.format(dockerfile=DOCKERFILE)):
        code, out, err = await start.exec(docker, step, timeout=900)
        assert code == 0, (step, out, err)
    archive = tmp_path / "built.tar"
    copied = run_cli(settings, "cp", f"{docker.id}:/root/built.tar", str(archive), timeout=900)
    assert copied.returncode == 0, copied.stderr
    imported = run_cli(settings, "image", "import", image_name, str(archive), timeout=900)
    assert imported.returncode == 0, imported.stderr
    await start.labyard.playgrounds.destroy(docker.id)  # room for the next one

    manifest = (
        f"kind: playground\nname: from-dockerfile\nmachines:\n"
        f"  - name: built\n    image: {image_name}\n"
    )
    built = await start(manifest)
    try:
        code, out, err = await start.exec(
            built, "cat /etc/labyard-added.txt /root/run.txt; test ! -e /etc/motd && echo no-motd"
        )
    finally:
        await start.labyard.playgrounds.destroy(built.id)  # so its image can be removed
    assert (code, out.split()) == (0, ["added-by-the-dockerfile", "made-by-run", "no-motd"]), err
