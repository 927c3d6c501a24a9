"""The most privileged container dockerd in the docker machine can make (CAP_SYS_ADMIN, no
seccomp filter of its own, /proc and /sys unmasked) holds every capability of the machine's
user namespace, and so still nothing of the host's. (`--privileged` itself asks for
capabilities a machine has not, e.g. CAP_SYS_RESOURCE, which runc cannot grant on these
hosts; docs/security.md.)"""

from __future__ import annotations

import pytest

from tests.runtime.test_docker import BUILD_IMAGE
from tests.security.conftest import Machine

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def docker(machines: dict[str, Machine]) -> Machine:
    machine = machines["docker"]
    await machine.ok(
        "docker image inspect local/busybox >/dev/null 2>&1 || {\n" + BUILD_IMAGE + "}"
    )
    return machine


async def test_privileged_container_stays_in_the_machine(docker: Machine) -> None:
    run = (
        "docker run --rm --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt "
        "seccomp=unconfined --security-opt systempaths=unconfined local/busybox sh -c"
    )
    await docker.ok(f"{run} 'mkdir -p /t && mount -t tmpfs t /t && echo mounted'")
    await docker.refused(f"{run} 'mkdir -p /t && mount -t tracefs t /t'")
    await docker.refused(f"{run} 'mkdir -p /t && mount -t debugfs t /t'")
    await docker.refused(f"{run} 'echo x > /proc/sys/kernel/core_pattern'")
    await docker.refused(f"{run} 'mknod /b b 8 0 && head -c1 /b'")
    out = await docker.ok(f"{run} 'cat /proc/self/uid_map'")
    inside, outside, _ = out.split()[:3]
    assert inside == "0" and int(outside) >= 1 << 16, out  # the machine's root, not the host's
