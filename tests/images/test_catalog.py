"""Every built-in playground, built from its recipes and started for real: each machine
boots (`systemctl is-system-running` is `running`, or `degraded` with only the units
expected), and a one-line check of what the playground is for passes.

The list of playgrounds is the catalog itself: one added without a CHECKS entry fails here.
Images are built from the Debian mirror when missing (cached by recipe digest), so a fresh
machine builds each once; recipes that need another distribution's archive
(`ubuntu-noble`) are not built (see docs/catalog.md).
"""

from __future__ import annotations

import pytest

from labyard.images import build_image
from labyard.manifest import builtin_names, load_manifest
from labyard.services import Labyard
from tests.conftest import Starter

BUILD_TIMEOUT_S = 1800


# playground -> (machine, command, what its stdout must be, stripped)
CHECKS: dict[str, tuple[str, str, str]] = {
    "linux": ("linux", ". /etc/os-release; echo $VERSION_ID", "12"),
    "linux-cluster": ("node-01", "ping -c1 -W2 node-03 >/dev/null && echo reached", "reached"),
    "docker": ("docker", "docker info --format '{{.Driver}}'", "overlay2"),
    "debian-trixie": ("trixie", ". /etc/os-release; echo $VERSION_ID", "13"),
    "podman": ("podman", "podman run --rm localhost/busybox echo ran in podman", "ran in podman"),
    "containerd": (
        "containerd",
        "ctr run --rm --rootfs /usr/local/share/labyard/busybox smoke /bin/busybox echo ran by ctr",
        "ran by ctr",
    ),
    "docker-swarm": (
        "manager",
        "docker node ls --format '{{.Status}} {{.Availability}}' | sort | uniq -c | xargs",
        "3 Ready Active",
    ),
    "ansible": ("control", "ansible nodes -m ping -o | grep -c SUCCESS", "3"),
    "network-lab": (
        "r2",
        "sysctl -n net.ipv4.ip_forward; vtysh -c 'show interface brief' | grep -c ' up '; "
        "ping -c1 -W2 r1 >/dev/null && ping -c1 -W2 r3 >/dev/null && echo neighbours",
        "1\n3\nneighbours",  # eth0, eth1 and lo up
    ),
    "dev-python": ("dev", "python3 -m venv /tmp/v && /tmp/v/bin/python -c 'print(6*7)'", "42"),
    "dev-go": (
        "dev",
        "cd /tmp && printf 'package main\\nimport \"fmt\"\\nfunc main() { fmt.Println(6*7) }\\n'"
        " > main.go && go run main.go",
        "42",
    ),
    "dev-node": ("dev", "node -e 'console.log(6*7)' && npm --version >/dev/null", "42"),
    "dev-rust": (
        "dev",
        "cd /tmp && cargo new --quiet hello && cd hello && cargo run --quiet --offline",
        "Hello, world!",
    ),
}
EXPECTED_FAILED_UNITS: dict[str, set[str]] = {}
"""Image -> units that may fail in a machine of it (none so far)."""


def test_every_builtin_playground_has_a_check() -> None:
    assert set(CHECKS) == set(builtin_names())


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_playground_boots_and_does_its_job(
    name: str, labyard: Labyard, starter: Starter
) -> None:
    manifest = load_manifest(name)
    for image in sorted({m.image for m in manifest.machines}):
        build_image(labyard.settings.images_dir, image)  # cached when the recipe is unchanged
    playground = await starter(manifest)
    try:
        for machine in manifest.machines:
            code, out, err = await starter.exec(
                playground,
                "systemctl is-system-running --wait; systemctl --failed --plain --no-legend",
                machine.name,
                timeout=120,
            )
            state, *failed_lines = out.strip().splitlines()
            failed = {line.split()[0] for line in failed_lines if line.strip()}
            expected = EXPECTED_FAILED_UNITS.get(machine.image, set())
            assert state in ("running", "degraded"), f"{machine.name}: {out}{err}"
            assert failed <= expected, f"{machine.name}: failed units {failed - expected}"
        where, command, expected_out = CHECKS[name]
        code, out, err = await starter.exec(playground, command, where, timeout=300)
        assert (code, out.strip()) == (0, expected_out), f"{name}: exit {code}\n{out}\n{err}"
    finally:
        await labyard.playgrounds.destroy(playground.id)
