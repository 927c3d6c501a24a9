"""The OCI runtime spec (config.json) of a machine: a system container with systemd as PID 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labyard.images import MachineNeeds
from labyard.manifest import Machine

CPU_PERIOD_US = 100_000

# Everything a root user on a Linux box expects, less what would reach through to the host:
# kernel modules, raw I/O ports, the clock, MAC policy and resource-limit overrides
# (CAP_SYS_RESOURCE also makes runc fail on these hosts: "unable to apply caps").
CAPABILITIES = [
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
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
    "CAP_PERFMON",
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

# /dev/net/tun and /dev/fuse on top of runc's defaults: VPN and FUSE labs need them.
EXTRA_DEVICES = [
    {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o666},
    {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666},
]


def _mount(dest: str, kind: str, source: str, *options: str) -> dict[str, Any]:
    return {"destination": dest, "type": kind, "source": source, "options": list(options)}


def _mounts(memory: int, volumes: dict[str, Path]) -> list[dict[str, Any]]:
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
        _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "rw"),
        _mount("/run", "tmpfs", "tmpfs", "nosuid", "nodev", "mode=755", half),
        _mount("/tmp", "tmpfs", "tmpfs", "nosuid", "nodev", half),
    ]
    for dest, source in volumes.items():
        mounts.append(_mount(dest, "bind", str(source), "rbind", "rw"))
    return mounts


def _resources(machine: Machine, needs: MachineNeeds) -> dict[str, Any]:
    devices: list[dict[str, Any]] = [{"allow": needs.all_devices, "access": "rwm"}]
    if not needs.all_devices:
        devices += [
            {"allow": True, "type": "c", "major": d["major"], "minor": d["minor"], "access": "rwm"}
            for d in EXTRA_DEVICES
        ]
    return {
        "devices": devices,
        "memory": {"limit": machine.memory, "swap": machine.memory},
        "cpu": {"quota": int(machine.cpus * CPU_PERIOD_US), "period": CPU_PERIOD_US},
        "pids": {"limit": machine.processes},
    }


def machine_config(
    machine: Machine, needs: MachineNeeds, *, netns: Path, cgroup: str, volumes: dict[str, Path]
) -> dict[str, Any]:
    """config.json for one machine; `volumes` maps a path in the machine to a host dir."""
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
        "mounts": _mounts(machine.memory, volumes),
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "cgroup"},
                {"type": "network", "path": str(netns)},
            ],
            "cgroupsPath": cgroup,
            "resources": _resources(machine, needs),
            "devices": [] if needs.all_devices else EXTRA_DEVICES,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }
