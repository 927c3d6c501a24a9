"""Root in a machine cannot reach the host kernel's shared surfaces: its tracing and debug
filesystems, BPF, perf, modules and file handles. Each attack is paired with a harmless
control of the same kind that must work, so a broken machine cannot pass."""

from __future__ import annotations

import pytest

from tests.security.conftest import Machine

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize("fstype", ["tracefs", "debugfs", "bpf", "securityfs", "configfs"])
async def test_host_kernel_filesystems_do_not_mount(machine: Machine, fstype: str) -> None:
    await machine.ok("mkdir -p /mnt/ok && mount -t tmpfs ok /mnt/ok && umount /mnt/ok")
    await machine.ok("mkdir -p /mnt/p && mount -t proc proc /mnt/p && umount /mnt/p")
    out = await machine.refused(f"mkdir -p /mnt/{fstype} && mount -t {fstype} x /mnt/{fstype}")
    # configfs is not built into every kernel (it is not in this host's): "unknown" is a
    # refusal too, from the host kernel itself.
    assert any(w in out for w in ("denied", "not permitted", "unknown filesystem")), out


BPF = """
import ctypes, errno, os, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
# eBPF: BPF_PROG_LOAD of "r0 = 0; exit" as a socket filter.
insns = struct.pack("<BBhi", 0xb7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
buf = ctypes.create_string_buffer(insns)
lic = ctypes.create_string_buffer(b"GPL")
attr = struct.pack("<IIQQ", 1, 2, ctypes.addressof(buf), ctypes.addressof(lic)) + bytes(96)
a = ctypes.create_string_buffer(attr)
fd = libc.syscall(321, 5, a, len(attr))
print("ebpf", fd, errno.errorcode.get(ctypes.get_errno()))
# Classic BPF on a socket (what tcpdump uses): harmless, must work.
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
prog = struct.pack("HBBI", 6, 0, 0, 0xFFFF)
fprog = ctypes.create_string_buffer(prog)
s.setsockopt(socket.SOL_SOCKET, 26, struct.pack("HL", 1, ctypes.addressof(fprog)))
print("cbpf ok")
"""


async def test_no_ebpf_programs_but_classic_socket_filters(machine: Machine) -> None:
    code, out = await machine.python(BPF)
    assert code == 0 and "cbpf ok" in out, out
    assert "ebpf -1 EPERM" in out, out


PERF = """
import ctypes, errno, struct, os
libc = ctypes.CDLL(None, use_errno=True)
# PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, system-wide on CPU 0 (pid -1).
attr = struct.pack("<IIQ", 1, 112, 0) + bytes(96)
a = ctypes.create_string_buffer(attr)
fd = libc.syscall(298, a, -1, 0, -1, 0)
print("perf", fd, errno.errorcode.get(ctypes.get_errno()))
print("own cpu time", os.times().user >= 0)
"""


async def test_no_system_wide_perf_events(machine: Machine) -> None:
    code, out = await machine.python(PERF)
    assert code == 0 and "own cpu time True" in out, out
    assert "perf -1 EPERM" in out, out
    # The machine's own CPU accounting stays readable: the harmless kind of measurement.
    # (cgroup v1's cpuacct as runc mounts it; cgroup v2's own cpu.stat, which liblxc mounts
    # at unified/ on a hybrid host; or a cgroup v2 host)
    await machine.ok(
        "cat /sys/fs/cgroup/cpuacct/cpuacct.usage || cat /sys/fs/cgroup/unified/cpu.stat"
        " || cat /sys/fs/cgroup/cpu.stat"
    )


MODULE = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("/bin/true", os.O_RDONLY)
r = libc.syscall(313, fd, b"", 0)  # finit_module
print("finit_module", r, errno.errorcode.get(ctypes.get_errno()))
r = libc.syscall(175, b"\\0" * 64, 64, b"")  # init_module
print("init_module", r, errno.errorcode.get(ctypes.get_errno()))
"""


async def test_kernel_modules_do_not_load(machine: Machine) -> None:
    code, out = await machine.python(MODULE)
    assert code == 0, out
    assert "finit_module -1 EPERM" in out and "init_module -1 EPERM" in out, out
    await machine.ok("uname -r && cat /proc/version")  # asking the kernel what it is is fine
    await machine.refused("modprobe -q dummy || insmod /nonexistent.ko")


HANDLES = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
handle = ctypes.create_string_buffer(8 + 128)
ctypes.memmove(handle, (128).to_bytes(4, "little"), 4)
mount_id = ctypes.c_int()
open("/tmp/handle-me", "w").close()
r = libc.name_to_handle_at(-100, b"/tmp/handle-me", handle, ctypes.byref(mount_id), 0)
print("name_to_handle_at", r, errno.errorcode.get(ctypes.get_errno()))
# A handle of inode 2 (the root of an ext4 filesystem, such as the host's) of type 1.
forged = ctypes.create_string_buffer(8 + 8)
ctypes.memmove(forged, (8).to_bytes(4, "little") + (1).to_bytes(4, "little")
               + (2).to_bytes(4, "little") + (0).to_bytes(4, "little"), 16)
r = libc.open_by_handle_at(os.open("/", os.O_RDONLY), forged, os.O_RDONLY)
print("open_by_handle_at", r, errno.errorcode.get(ctypes.get_errno()))
r = libc.open_by_handle_at(os.open("/", os.O_RDONLY), handle, os.O_RDONLY)
print("own handle", r, errno.errorcode.get(ctypes.get_errno()))
"""


async def test_open_by_handle_at_is_refused(machine: Machine) -> None:
    code, out = await machine.python(HANDLES)
    assert code == 0, out
    assert "name_to_handle_at 0 " in out, out  # making a handle of one's own file works
    assert "open_by_handle_at -1 EPERM" in out, out
    assert "own handle -1 EPERM" in out, out  # even one's own: the call itself is refused


async def test_kernel_settings_are_read_only(machine: Machine) -> None:
    await machine.ok("echo 1 > /proc/sys/net/ipv4/ip_forward")  # the machine's own netns
    await machine.ok("hostname m && cat /proc/sys/kernel/hostname")  # its own UTS namespace
    for path in (
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/kernel/modprobe",
        "/proc/sys/vm/drop_caches",
        "/proc/sysrq-trigger",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/uevent_helper",
        "/sys/kernel/profiling",
    ):
        await machine.refused(f"echo 1 > {path}")
    await machine.ok("cat /proc/sys/kernel/core_pattern")
