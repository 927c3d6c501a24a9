"""dockerd runs in the built-in `docker` playground: a locally built image runs, and a
published port answers inside the machine and from the host. No registry is needed."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TypeVar

from labyard.services import Playground
from tests.conftest import Starter

T = TypeVar("T")
PAGE = "hello-from-container"

# A busybox-only image from the machine's busybox-static: relative applet links (an absolute
# `busybox --install -s` would point at /tmp/bb inside the image), imported as local/busybox.
BUILD_IMAGE = f"""set -e
rm -rf /tmp/bb && mkdir -p /tmp/bb/bin /tmp/bb/www
cp /bin/busybox /tmp/bb/bin/
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "/tmp/bb/bin/$applet"
done
echo {PAGE} > /tmp/bb/www/index.html
tar -C /tmp/bb -c . | docker import - local/busybox
"""


async def wait_for(
    probe: Callable[[], Awaitable[tuple[bool, T]]], what: str, timeout_s: float = 30
) -> T:
    """Poll `probe` (-> (done, observation)) until done; fail with the last observation."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, seen = await probe()
        if done:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s:g} s; last saw {seen!r}")
        await asyncio.sleep(0.25)


async def run(start: Starter, playground: Playground, command: str, timeout: float = 60) -> str:
    """Run a command that must succeed; its stdout, stripped."""
    code, out, err = await start.exec(playground, command, timeout=timeout)
    assert code == 0, (command, code, out, err)
    return out.strip()


def http_get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except (OSError, urllib.error.URLError) as exc:
        return f"error: {exc}"


async def test_docker_runs_a_local_image_with_a_published_port(start: Starter) -> None:
    playground = await start("docker")
    address = playground.machines[0].address

    async def docker_active() -> tuple[bool, str]:
        _, out, _ = await start.exec(playground, "systemctl is-active docker", timeout=10)
        return out.strip() == "active", out.strip()

    await wait_for(docker_active, "active docker.service", timeout_s=60)

    fs_type = await run(start, playground, "stat -f -c %T /var/lib/docker")
    assert fs_type.startswith("ext"), fs_type  # not overlayfs: overlay2 cannot nest on it
    assert await run(start, playground, "docker info --format '{{.Driver}}'") == "overlay2"

    await run(start, playground, BUILD_IMAGE)
    assert await run(start, playground, "docker run --rm local/busybox echo hi") == "hi"

    await run(start, playground, "docker run -d -p 8080:80 local/busybox httpd -f -p 80 -h /www")

    async def served_inside() -> tuple[bool, str]:
        _, out, _ = await start.exec(playground, "curl -s -m 2 localhost:8080", timeout=10)
        return out.strip() == PAGE, out

    async def served_to_host() -> tuple[bool, str]:
        body = await asyncio.to_thread(http_get, f"http://{address}:8080/")
        return body.strip() == PAGE, body

    await wait_for(served_inside, "page on localhost:8080 in the machine")
    await wait_for(served_to_host, f"page on {address}:8080 from the host")
