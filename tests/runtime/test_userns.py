"""Machines in their own user namespace keep doing what playgrounds are for: systemd,
journald, sshd, user logins, ping, apt with a local .deb, child cgroups, and in the docker
image dockerd with overlay2, `docker build`, published ports and networks of its own."""

from __future__ import annotations

from labyard.images import find_image, store
from labyard.services import Labyard, Playground
from labyard.settings import Settings
from tests.conftest import Starter
from tests.runtime.test_docker import BUILD_IMAGE, run, wait_for

DEB = r"""set -e
rm -rf /tmp/pkg && mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/share/labyard-hello
printf 'Package: labyard-hello\nVersion: 1.0\nArchitecture: all\n' > /tmp/pkg/DEBIAN/control
printf 'Maintainer: t <t@t>\nDescription: t\n' >> /tmp/pkg/DEBIAN/control
echo hello > /tmp/pkg/usr/share/labyard-hello/greeting
dpkg-deb --build /tmp/pkg /tmp/labyard-hello.deb >/dev/null
apt-get install -y -q /tmp/labyard-hello.deb >/dev/null 2>&1
dpkg -s labyard-hello | grep -q 'Status: install ok installed'
cat /usr/share/labyard-hello/greeting
"""


async def test_a_linux_machine_works_as_root_of_its_own_namespace(
    start: Starter, settings: Settings, labyard: Labyard
) -> None:
    playground = await start("linux")
    mapping = (await run(start, playground, "cat /proc/self/uid_map")).split()
    assert mapping[0] == "0" and int(mapping[1]) >= 1 << 16 and mapping[2] == "65536"
    host_root = int(mapping[1])
    assert await run(start, playground, "systemctl is-system-running --wait") == "running"
    assert await run(start, playground, "stat -c %u:%g /etc/passwd /usr/bin") == "0:0\n0:0"
    # journald takes messages; a user logs in through PAM and owns what it writes.
    await run(start, playground, "logger labyard-journal-check")
    assert "labyard-journal-check" in await run(start, playground, "journalctl -b --no-pager")
    await run(start, playground, "useradd -m alice")
    out = await run(start, playground, "su -l alice -c 'id -un; touch ~/mine; stat -c %U ~/mine'")
    assert out.split() == ["alice", "alice"], out
    assert await run(start, playground, "ping -c 1 -W 2 127.0.0.1 >/dev/null && echo ok") == "ok"
    assert (
        await run(start, playground, "su alice -c 'ping -c 1 -W 2 127.0.0.1' >/dev/null; echo $?")
        == "0"
    )
    assert await run(start, playground, DEB) == "hello"
    # A transient unit with its own memory limit: systemd makes child cgroups of its own.
    out = await run(
        start, playground, "systemd-run --wait --pipe -q -p MemoryMax=64M cat /proc/self/cgroup"
    )
    assert "run-" in out, out
    # On the host, what root wrote in the machine belongs to the machine's unprivileged root.
    upper = settings.playgrounds_dir / playground.id / "machines/linux/disk/upper"
    greeting = upper / "usr/share/labyard-hello/greeting"
    assert greeting.stat().st_uid == host_root, greeting
    assert (upper / "home/alice/mine").stat().st_uid == host_root + 1000
    # The shared image is mounted (idmapped), so `image rm` must see it as in use.
    image = find_image(settings.images_dir, "linux")
    assert store._in_use(image.path)


async def test_docker_builds_and_networks_in_a_user_namespace(start: Starter) -> None:
    playground: Playground = await start("docker")

    async def docker_active() -> tuple[bool, str]:
        _, out, _ = await start.exec(playground, "systemctl is-active docker", timeout=10)
        return out.strip() == "active", out.strip()

    await wait_for(docker_active, "active docker.service", timeout_s=60)
    assert await run(start, playground, "docker info --format '{{.Driver}}'") == "overlay2"
    await run(start, playground, BUILD_IMAGE)
    dockerfile = "FROM local/busybox\nRUN echo built-here > /built\nCMD cat /built\n"
    await run(
        start, playground, f"mkdir -p /tmp/ctx && printf '{dockerfile}' > /tmp/ctx/Dockerfile"
    )
    await run(start, playground, "docker build -q -t local/built /tmp/ctx", timeout=120)
    assert await run(start, playground, "docker run --rm local/built") == "built-here"
    await run(start, playground, "docker network create labnet")
    await run(
        start,
        playground,
        "docker run -d --name web --network labnet local/busybox httpd -f -p 80 -h /www",
    )
    page = await run(
        start,
        playground,
        "docker run --rm --network labnet local/busybox wget -q -O - http://web/",
    )
    assert page == "hello-from-container", page
    # The docker image no longer gets every host device: the fixed set only.
    assert "kvm" not in (await run(start, playground, "ls /dev")).split()
