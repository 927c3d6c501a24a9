"""The OCI runtime spec (config.json) of a machine: a system container with systemd as PID 1.

Root in a machine is root of the machine's own user namespace only: uid 0 inside is an
unprivileged host user (see idmap.py), so its capabilities act on what the machine's
namespaces own (its mounts, network, processes, files) and on nothing of the host's.
A seccomp allow-list (seccomp.py) and a fixed set of devices narrow it further.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from labyard.manifest import Machine
from labyard.runtime import seccomp
from labyard.runtime.local.idmap import IdRange

CPU_PERIOD_US = 100_000
CPU_SHARES = 1024
"""Every machine's weight under contention, whatever its `cpus`: machines are siblings in
their instance's cgroup parent, so equal shares give each an equal part of a busy host
however many processes it runs (a fork bomb is one machine's worth, not a thousand
processes' worth). 1024 is cgroup v1's default, a nice-0 task's weight, set explicitly so
that it holds whatever the defaults; runc maps it to cpu.weight 39 on cgroup v2, equal among
machines all the same."""

# What root on a Linux box expects, all of it namespaced by the user namespace. Left out:
# kernel modules, raw I/O, the clock, MAC policy, syslog, resource-limit overrides
# (CAP_SYS_RESOURCE also makes runc fail on these hosts: "unable to apply caps"), and the
# capabilities that only ever matter against the host kernel: BPF and perf (CAP_BPF,
# CAP_PERFMON), file handles (CAP_DAC_READ_SEARCH: open_by_handle_at) and checkpointing.
CAPABILITIES = [
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_NICE",
    "CAP_SYS_PTRACE",
    "CAP_SYS_TTY_CONFIG",
]

MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    # Not mountable from a user namespace anyway; masked so nothing of them shows.
    "/sys/kernel/debug",
    "/sys/kernel/tracing",
    "/sys/kernel/security",
]
# /proc/sys is read-only but for net/: network sysctls (ip_forward, ...) are per network
# namespace, so they only ever change this machine; the rest would change the host.
READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sysrq-trigger",
    *(f"/proc/sys/{d}" for d in ("abi", "crypto", "debug", "dev", "fs", "kernel", "user", "vm")),
]


def _char(path: str, major: int, minor: int) -> dict[str, Any]:
    return {"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 0o666}


# The only devices a machine gets (runc makes null, zero, full, random, urandom, tty and
# /dev/pts itself): /dev/net/tun and /dev/fuse for VPN and FUSE labs. Every other device
# stays refused by the device cgroup, dockerd's machines included. These are nodes of the
# machine's own (storage.device_nodes), bind-mounted in: the host's may be 0600 root, which
# root in the machine's user namespace may not open.
EXTRA_DEVICES = [_char("/dev/net/tun", 10, 200), _char("/dev/fuse", 10, 229)]
KVM = _char("/dev/kvm", 10, 232)
"""Only when the operator enables it (LABYARD_KVM=1): nested VMs inside machines."""

_ALLOWED = [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, None)]
"""null, zero, full, random, urandom, tty, console, ptmx, and every /dev/pts/N."""


def _mount(dest: str, kind: str, source: str, *options: str) -> dict[str, Any]:
    return {"destination": dest, "type": kind, "source": source, "options": list(options)}


def _mounts(memory: int, volumes: dict[str, Path], nodes: dict[str, Path]) -> list[dict[str, Any]]:
    # tmpfs sizes follow the machine's memory (they are charged to it), as Linux sizes
    # them after the RAM of a real box; filling one says "No space left", not OOM.
    half = f"size={memory // 2}"
    mounts = [
        _mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ),
        _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", half),
        _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        # Read-write so that nested containers (a privileged `docker run`) may mount their
        # own sysfs: the kernel refuses a mount less locked-down than its parent. Writing
        # needs ownership, and only the machine's own network devices are the machine's.
        _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "rw"),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "rw"),
        _mount("/run", "tmpfs", "tmpfs", "nosuid", "nodev", "mode=755", half),
        _mount("/tmp", "tmpfs", "tmpfs", "nosuid", "nodev", half),
        # A second sysfs: `ip netns exec` unmounts /sys before mounting the new netns's own,
        # and the kernel lets a user namespace mount sysfs only while one is mounted in full.
        _mount("/run/sysfs", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
    ]
    for dest, source in volumes.items():
        mounts.append(_mount(dest, "bind", str(source), "rbind", "rw"))
    for dest, source in nodes.items():
        mounts.append(_mount(dest, "bind", str(source), "bind", "rw", "nosuid", "noexec"))
    return mounts


def devices(kvm: bool) -> list[dict[str, Any]]:
    """The device nodes a machine gets beyond runc's own."""
    return [*EXTRA_DEVICES, KVM] if kvm else EXTRA_DEVICES


def host_cpus() -> int:
    """CPUs this process, and so the machines it starts, may run on."""
    return len(os.sched_getaffinity(0))


def cpu_ceiling(host: int) -> float:
    """The most CPUs one machine may use on a host with `host` of them: all but half of one
    (half of a single one). However busy one machine is, the server, its SSH sessions and the
    other machines keep half a CPU it cannot take; the rest goes by weight (CPU_SHARES).
    bench/fair_cpu.py, a fork bomb in a 2-CPU `docker` machine on 2 cores: the host's own
    spawn p95 went from ~80-115 ms to ~10 ms, another machine's exec p95 from up to 0.8 s to
    ~0.1-0.2 s, with a ceiling of 1 or of 1.5 CPUs alike; 1.5 leaves a `docker` machine more
    of the host while it boots (dockerd and systemd at once)."""
    return max(host - 0.5, host / 2)


def cpu_resources(cpus: float) -> dict[str, int]:
    """The OCI `cpu` resources of a machine asking for `cpus`: a quota of that many CPUs
    up to the host's ceiling, and the same shares as every other machine."""
    limit = min(cpus, cpu_ceiling(host_cpus()))
    return {"shares": CPU_SHARES, "quota": int(limit * CPU_PERIOD_US), "period": CPU_PERIOD_US}


def _resources(machine: Machine, devices: list[dict[str, Any]]) -> dict[str, Any]:
    allowed = [(major, minor) for major, minor in _ALLOWED]
    allowed += [(d["major"], d["minor"]) for d in devices]
    return {
        "devices": [
            {"allow": False, "access": "rwm"},
            *(
                {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
                if minor is not None
                else {"allow": True, "type": "c", "major": major, "access": "rwm"}
                for major, minor in allowed
            ),
        ],
        "memory": {"limit": machine.memory, "swap": machine.memory},
        "cpu": cpu_resources(machine.cpus),
        "pids": {"limit": machine.processes},
    }


def machine_config(
    machine: Machine,
    *,
    ids: IdRange,
    userns: Path,
    netns: Path,
    cgroup: str,
    volumes: dict[str, Path],
    nodes: dict[str, Path],
    kvm: bool = False,
) -> dict[str, Any]:
    """config.json for one machine; `volumes` maps a path in the machine to a host dir,
    `nodes` each of `devices(kvm)` to the host device node made for the machine.

    The machine joins the user namespace at `userns` and the network namespace it owns at
    `netns` (both made by userns.create); `ids` is that user namespace's mapping.
    """
    mapping = [{"containerID": 0, "hostID": ids.start, "size": ids.size}]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/sbin/init"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "container=labyard",  # systemd adapts to running in a container
                "LANG=C.UTF-8",
            ],
            "cwd": "/",
            "capabilities": {k: CAPABILITIES for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": machine.name,
        "mounts": _mounts(machine.memory, volumes, nodes),
        "linux": {
            "namespaces": [
                {"type": "user", "path": str(userns)},
                {"type": "network", "path": str(netns)},
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "cgroup"},
            ],
            # runc joins the namespace above rather than writing these; it needs them to
            # know who root is (the owner of /dev and its devices).
            "uidMappings": mapping,
            "gidMappings": mapping,
            "cgroupsPath": cgroup,
            "resources": _resources(machine, devices(kvm)),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": seccomp.profile(),
        },
    }
