"""Root in a machine cannot reach the host's disks or filesystems, and a cgroup hierarchy
mounted inside is the machine's own, without the host's release_agent."""

from __future__ import annotations

import os

import pytest

from labyard.runtime.lxd.driver import LxdDriver
from tests.security.conftest import Machine

pytestmark = pytest.mark.asyncio(loop_scope="session")


def host_root_device() -> tuple[int, int]:
    st = os.stat("/")
    return os.major(st.st_dev), os.minor(st.st_dev)


async def test_host_block_device_cannot_be_made_or_read(machine: Machine) -> None:
    major, minor = host_root_device()
    # Control: the same tools on what a machine may have.
    await machine.ok("mknod /tmp/fifo p && (echo hi > /tmp/fifo &) && read l < /tmp/fifo")
    await machine.ok("dd if=/dev/zero of=/tmp/zeros bs=4k count=4 status=none")
    await machine.refused(f"mknod /tmp/disk b {major} {minor}")
    await machine.refused(f"mknod /dev/hostdisk b {major} {minor}")
    # Even a node that exists in a machine (none does) would meet the device cgroup: the
    # block devices the host has are not in the machine's /dev.
    out = await machine.ok("ls /dev")
    assert not any(name.startswith(("vd", "sd", "nvme", "loop", "dm-")) for name in out.split())


async def test_only_the_fixed_device_set(machine: Machine) -> None:
    out = await machine.ok("ls /dev /dev/net")
    assert "kvm" not in out.split() and "mem" not in out.split(), out
    await machine.ok(
        "exec 3<>/dev/net/tun && exec 3<>/dev/fuse && head -c1 /dev/urandom >/dev/null"
    )
    await machine.refused("mknod /tmp/mem c 1 1 && head -c1 /tmp/mem")  # /dev/mem
    await machine.refused("mknod /tmp/kmsg c 1 11 && head -c1 /tmp/kmsg")


async def test_host_filesystems_cannot_be_mounted(machine: Machine) -> None:
    major, minor = host_root_device()
    await machine.ok(
        "mkdir -p /mnt/b && mount --bind /etc /mnt/b && ls /mnt/b/hostname && umount /mnt/b"
    )
    await machine.refused(f"mount -t ext4 /dev/block/{major}:{minor} /mnt/b")
    await machine.refused("mount -t ext4 /dev/vda /mnt/b || mount -t ext4 /dev/sda /mnt/b")
    # What the machine sees as / is its own: an overlay (local), a subvolume of the LXD
    # pool (lxd, whose pool is btrfs here), never the host's disk.
    out = await machine.ok("findmnt -n -o FSTYPE /")
    own = "btrfs" if isinstance(machine.labyard.driver, LxdDriver) else "overlay"
    assert out.strip() == own, out
    await machine.refused(f"test -e {os.getcwd()}/pyproject.toml")  # the host's files


async def test_cgroup_hierarchy_is_the_machines_own(machine: Machine) -> None:
    # Control: mounting an existing v1 hierarchy works and shows the machine's own cgroup.
    await machine.ok("mkdir -p /mnt/cg && mount -t cgroup -o memory memory /mnt/cg")
    out = await machine.ok("ls /mnt/cg")
    assert "memory.limit_in_bytes" in out, out
    # The classic escape: a release_agent that the host kernel runs as host root.
    await machine.refused("test -e /mnt/cg/release_agent && echo /x > /mnt/cg/release_agent")
    await machine.refused("echo 1 > /mnt/cg/notify_on_release")  # the top is the host's
    await machine.ok("mkdir -p /mnt/cg/child && echo 1 > /mnt/cg/child/notify_on_release")
    await machine.ok("rmdir /mnt/cg/child && umount /mnt/cg")
    # A new hierarchy (where release_agent would be writable) cannot be made at all.
    await machine.refused("mkdir -p /mnt/new && mount -t cgroup -o none,name=escape x /mnt/new")
    await machine.refused(
        "mount -t cgroup -o rdma rdma /mnt/new || mount -t cgroup -o net_cls x /mnt/new"
    )


async def test_limits_cannot_be_raised_from_inside(machine: Machine) -> None:
    """Delegation hands the machine its cgroup's processes, never its own limits."""
    out = await machine.ok("cat /sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert int(out) <= 512 << 20, out
    await machine.refused("echo -1 > /sys/fs/cgroup/memory/memory.limit_in_bytes")
    await machine.refused("echo max > /sys/fs/cgroup/pids/pids.max")
    await machine.ok("mkdir -p /sys/fs/cgroup/memory/lab && rmdir /sys/fs/cgroup/memory/lab")
