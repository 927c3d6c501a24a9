"""The seccomp filter of every machine: the syscalls it may make, as the OCI `linux.seccomp`
object runc loads (`profile`) and as the policy liblxc loads for LXD and Incus (`lxc_policy`).

Derived from Docker's default seccomp profile (profiles/seccomp/default.json in
github.com/moby/moby, now github.com/moby/profiles; Copyright Docker, Inc. and the Moby
authors, Apache License 2.0). Docker's profile is an allow-list whose entries depend on the
container's capabilities, the CPU architecture and the kernel; here those conditions are
resolved once, for labyard's machines:

- capabilities: a machine keeps, in its own user namespace, CAP_SYS_ADMIN, CAP_NET_ADMIN,
  CAP_SYS_PTRACE, CAP_SYS_CHROOT, CAP_SYS_NICE, CAP_SYS_BOOT, CAP_SYS_TTY_CONFIG,
  CAP_MKNOD, CAP_SETUID/SETGID, CAP_CHOWN and the like, and never has CAP_BPF,
  CAP_PERFMON, CAP_DAC_READ_SEARCH, CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_TIME,
  CAP_SYSLOG, CAP_SYS_PACCT or CAP_SYS_RESOURCE. Docker's entries for kept capabilities
  are in; those for the others are out, even where a kept capability (CAP_SYS_ADMIN)
  would also let Docker allow them (bpf, perf_event_open, syslog, lookup_dcookie);
- architectures: x86_64 and aarch64, each with its native ABI only. 32-bit programs (i386,
  x32, arm) are refused: their compat syscall paths are a classic source of kernel bugs, and
  every ABI listed makes runc compile the filter again (measured here: 41 ms for a `runc
  create` with three x86 ABIs, 30 ms with one, 23 ms without a filter);
- kernel: 4.8 or later (ptrace can no longer step around seccomp).

On top of Docker's profile, a machine is a system container: systemd is PID 1 and, in the
docker image, dockerd runs nested containers with runc. So pivot_root is allowed (runc
needs it), the keyring calls say "not implemented" rather than "denied" (runc gives up on
EPERM), personality(2) may also turn off ASLR (gdb does), and io_uring is refused (as
Docker has since 25.0).

Nothing the profile refuses is listed in it: an unlisted call fails with EPERM. runc adds
its own stub in front of the filter that answers ENOSYS for syscall numbers above the
highest one the profile names, so calls too new for the host's libseccomp (statmount,
mseal, ...) look unimplemented rather than forbidden, and programs fall back as they do on
an older kernel. runc ignores names its libseccomp does not know, so NEWER_ALLOWED can name
calls Debian 12's libseccomp 2.5.4 (syscall table of Linux 6.7) has never heard of: they
become allowed once the host's libseccomp learns them.
"""

from __future__ import annotations

import platform
from typing import Any

from labyard.errors import RuntimeFailure

ENOSYS = 38
EPERM = 1

# Allowed on every architecture. 32-bit names (chown32, fcntl64, ..._time64) would serve
# the i386 and arm ABIs; with the native ABI only (ARCHITECTURES) libseccomp ignores them,
# and turning a 32-bit ABI back on is one line.
ALLOWED: tuple[str, ...] = (
    # Processes and threads: fork, exec, wait, exit, futexes, thread and signal state.
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "vfork",
    "wait4",
    "waitid",
    "restart_syscall",
    "set_tid_address",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futex_wait",
    "futex_wake",
    "futex_requeue",
    "membarrier",
    "getpid",
    "getppid",
    "gettid",
    "getpgid",
    "getpgrp",
    "getsid",
    "setpgid",
    "setsid",
    "prctl",
    "capget",
    "capset",
    "kill",
    "tkill",
    "tgkill",
    "pidfd_open",
    "pidfd_send_signal",
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
    "signalfd",
    "signalfd4",
    # Credentials: root in the machine switches users (login, sshd, su, apt's _apt). Only
    # ids mapped into the machine's user namespace can be taken.
    "getuid",
    "getuid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getegid",
    "getegid32",
    "getresuid",
    "getresuid32",
    "getresgid",
    "getresgid32",
    "getgroups",
    "getgroups32",
    "setuid",
    "setuid32",
    "setgid",
    "setgid32",
    "setreuid",
    "setreuid32",
    "setregid",
    "setregid32",
    "setresuid",
    "setresuid32",
    "setresgid",
    "setresgid32",
    "setfsuid",
    "setfsuid32",
    "setfsgid",
    "setfsgid32",
    "setgroups",
    "setgroups32",
    # Memory of the calling process.
    "brk",
    "mmap",
    "mmap2",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "mincore",
    "msync",
    "mlock",
    "mlock2",
    "mlockall",
    "munlock",
    "munlockall",
    "remap_file_pages",
    "memfd_create",
    "memfd_secret",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "map_shadow_stack",
    "process_mrelease",
    # NUMA policy of the calling process: Docker allows it with CAP_SYS_NICE, which a
    # machine keeps. migrate_pages and move_pages (other processes' pages) stay refused.
    "get_mempolicy",
    "mbind",
    "set_mempolicy",
    "set_mempolicy_home_node",
    # File descriptors and I/O.
    "open",
    "openat",
    "openat2",
    "creat",
    "close",
    "close_range",
    "read",
    "readv",
    "pread64",
    "preadv",
    "preadv2",
    "write",
    "writev",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "lseek",
    "_llseek",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "fcntl64",
    "ioctl",
    "flock",
    "pipe",
    "pipe2",
    "splice",
    "tee",
    "vmsplice",
    "sendfile",
    "sendfile64",
    "copy_file_range",
    "fsync",
    "fdatasync",
    "sync",
    "syncfs",
    "sync_file_range",
    "fallocate",
    "fadvise64",
    "readahead",
    "cachestat",
    "truncate",
    "truncate64",
    "ftruncate",
    "ftruncate64",
    # Linux AIO (databases, QEMU). io_uring is refused, see REFUSED.
    "io_setup",
    "io_destroy",
    "io_submit",
    "io_cancel",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    # Paths, names and metadata. In a user namespace mknod makes fifos, sockets and
    # overlayfs whiteouts, never device nodes.
    "stat",
    "stat64",
    "lstat",
    "lstat64",
    "fstat",
    "fstat64",
    "fstatat64",
    "newfstatat",
    "statx",
    "statfs",
    "statfs64",
    "fstatfs",
    "fstatfs64",
    "access",
    "faccessat",
    "faccessat2",
    "chdir",
    "fchdir",
    "getcwd",
    "chroot",
    "mkdir",
    "mkdirat",
    "rmdir",
    "mknod",
    "mknodat",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "readlink",
    "readlinkat",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "getdents",
    "getdents64",
    "umask",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "chown32",
    "fchown",
    "fchown32",
    "fchownat",
    "lchown",
    "lchown32",
    "utimes",
    "utimensat",
    "utimensat_time64",
    "futimesat",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    # File handles: systemd reads mount ids with name_to_handle_at. Opening a handle
    # (open_by_handle_at) is refused: it walks around mount and chroot boundaries.
    "name_to_handle_at",
    # Watching files: inotify, and fanotify (Docker: CAP_SYS_ADMIN). Without CAP_SYS_ADMIN
    # in the host's namespace the kernel only grants fanotify's unprivileged mode.
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    "fanotify_init",
    "fanotify_mark",
    # Waiting: poll, select, epoll, eventfd, timers and sleeping.
    "poll",
    "ppoll",
    "ppoll_time64",
    "_newselect",
    "pselect6",
    "pselect6_time64",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd",
    "eventfd2",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_settime64",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timer_create",
    "timer_delete",
    "timer_settime",
    "timer_settime64",
    "timer_gettime",
    "timer_gettime64",
    "timer_getoverrun",
    "getitimer",
    "setitimer",
    "nanosleep",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    # Reading the clock. adjtimex/clock_adjtime only read it here: changing the clock needs
    # CAP_SYS_TIME in the host's user namespace, and settimeofday/clock_settime are refused.
    "gettimeofday",
    "clock_gettime",
    "clock_gettime64",
    "clock_getres",
    "clock_getres_time64",
    "times",
    "adjtimex",
    "clock_adjtime",
    "clock_adjtime64",
    # Sockets; socket(2) itself is allowed per address family below.
    "socketpair",
    "bind",
    "connect",
    "listen",
    "accept",
    "accept4",
    "getsockname",
    "getpeername",
    "getsockopt",
    "setsockopt",
    "shutdown",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "recvmmsg_time64",
    # SysV and POSIX IPC: namespaced (the machine has its own IPC namespace).
    "msgget",
    "msgctl",
    "msgsnd",
    "msgrcv",
    "semget",
    "semctl",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmget",
    "shmctl",
    "shmat",
    "shmdt",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_notify",
    "mq_getsetattr",
    # Scheduling and limits: bounded by the machine's cgroup; raising a hard limit needs
    # CAP_SYS_RESOURCE, which a machine does not have.
    "sched_yield",
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_getattr",
    "sched_setattr",
    "sched_getparam",
    "sched_setparam",
    "sched_getscheduler",
    "sched_setscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "getpriority",
    "setpriority",
    "ioprio_get",
    "ioprio_set",
    "getrlimit",
    "setrlimit",
    "ugetrlimit",
    "prlimit64",
    "getrusage",
    # System information and randomness.
    "uname",
    "sysinfo",
    "getcpu",
    "getrandom",
    # Sandboxing oneself: systemd units, nested containers (runc loads its own filter),
    # browsers.
    "seccomp",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    # Debugging (Docker: CAP_SYS_PTRACE, and ptrace on any kernel >= 4.8): strace, gdb,
    # systemd's kcmp. The PID namespace keeps every target inside the machine.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "kcmp",
    "pidfd_getfd",
    # Containers inside the machine (Docker: CAP_SYS_ADMIN, which a machine holds in its
    # own user namespace): namespaces, mounts and the new mount API (systemd 252, runc).
    # The kernel confines all of them to namespaces the machine owns; mounts are limited
    # to filesystems that may be mounted in a user namespace. pivot_root is not in
    # Docker's profile: runc needs it to start a container.
    "clone",
    "clone3",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "sethostname",
    "setdomainname",
    # Quotas (Docker: CAP_SYS_ADMIN): reading one's own quota; setting one needs
    # CAP_SYS_ADMIN in the host's user namespace.
    "quotactl",
    "quotactl_fd",
    # systemd as PID 1 (Docker: CAP_SYS_BOOT, CAP_SYS_TTY_CONFIG). In a PID namespace
    # other than the host's (every machine has its own), reboot(2) only ends that
    # namespace: halt and reboot stop the machine, every other command fails with EINVAL.
    "reboot",
    "vhangup",
)

# Allowed on one architecture family only.
ARCH_ALLOWED: dict[str, tuple[str, ...]] = {
    "x86_64": (
        "arch_prctl",  # TLS setup of every x86_64 process
        "modify_ldt",  # wine, old 32-bit code
        "get_thread_area",
        "set_thread_area",
        "epoll_ctl_old",
        "epoll_wait_old",
        "select",
        "alarm",
        "time",
        "utime",
        # i386 ABI: multiplexed socket and IPC calls, old variants. A 32-bit process can
        # reach socket(2) through socketcall, whose arguments seccomp cannot inspect, so
        # the address-family filter holds for 64-bit processes only (as in Docker).
        "socketcall",
        "ipc",
        "waitpid",
        "fadvise64_64",
        "umount",
    ),
    "aarch64": (
        # 32-bit arm ABI.
        "arm_fadvise64_64",
        "arm_sync_file_range",
        "breakpoint",
        "cacheflush",
        "set_tls",
        "send",
        "recv",
    ),
}

# Allowed as soon as the host's libseccomp knows them; Debian 12's does not (their
# numbers are above Linux 6.7's, so runc's stub answers ENOSYS for them meanwhile).
NEWER_ALLOWED: tuple[str, ...] = (
    "statmount",  # newer libmount and systemd read mounts with these, else /proc
    "listmount",
    "open_tree_attr",  # open_tree + mount_setattr in one call (Linux 6.15)
    "mseal",  # sealing one's own mappings
    "getxattrat",
    "setxattrat",
    "listxattrat",
    "removexattrat",
    "lsm_get_self_attr",  # Docker: CAP_SYS_ADMIN; the caller's own LSM labels
    "lsm_set_self_attr",
    "lsm_list_modules",
    "uretprobe",  # x86_64: return probes set by the host's tracers must not crash a process
)

# The kernel keyring is not namespaced per machine (keys are looked up by uid and a
# machine's uids are host uids), so Docker refuses these calls. Here they say ENOSYS,
# "kernel built without keys", rather than EPERM: runc, started by a nested dockerd,
# joins a fresh session keyring per container and carries on only on ENOSYS ("unable to
# join session keyring: operation not permitted" otherwise); systemd skips the keyring
# of its units on either.
NOT_IMPLEMENTED: tuple[str, ...] = ("add_key", "keyctl", "request_key")

# socket(2) address families, as in Docker's current profile: AF_UNSPEC .. AF_ROSE (0-11)
# and then those listed. Left out: DECnet (12), Econet (19), ATM SVC (20), IrDA (23),
# WAN pipe (25), ISDN (34), CAIF (37), AF_ALG (38, the kernel crypto API), AF_VSOCK (40,
# a channel to the hypervisor) and anything newer than AF_MCTP (45): obsolete or host-
# facing code that a user namespace would otherwise reach, module autoloading included.
SOCKET_FAMILIES_BELOW = 12
SOCKET_FAMILIES: tuple[int, ...] = (
    *(13, 14, 15, 16, 17, 18),  # NETBEUI, SECURITY, KEY (IPsec), NETLINK, PACKET, ASH
    *(21, 22, 24),  # RDS, SNA, PPPOX
    *(26, 27, 28, 29, 30, 31, 32, 33),  # LLC, IB, MPLS, CAN, TIPC, BLUETOOTH, IUCV, RXRPC
    *(35, 36, 39),  # PHONET, IEEE802154, NFC
    *(41, 42, 43, 44, 45),  # KCM, QIPCRTR, SMC, XDP, MCTP
)

# personality(2) values: Docker's (PER_LINUX, PER_LINUX32 for `linux32`, UNAME26 and the
# 0xffffffff query), plus ADDR_NO_RANDOMIZE (0x0040000), which gdb and `setarch -R` set
# to debug without ASLR. The kernel drops it again when a setuid program runs.
PERSONALITIES: tuple[int, ...] = (
    0x0000000,
    0x0000008,
    0x0020000,
    0x0020008,
    0x0040000,
    0x0040008,
    0xFFFFFFFF,
)

# Refused (not allowed above, so they fail with EPERM); listed for readers and tests.
REFUSED: tuple[str, ...] = (
    # Loading kernel code or another kernel.
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "kexec_load",
    "kexec_file_load",
    # Tracing and profiling the host kernel (CAP_BPF, CAP_PERFMON are not given).
    "bpf",
    "perf_event_open",
    "lookup_dcookie",
    # Hardware and host-wide state: I/O ports, swap, process accounting, the clock and
    # the kernel log are the host's, not the machine's.
    "iopl",
    "ioperm",
    "pciconfig_iobase",
    "pciconfig_read",
    "pciconfig_write",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_settime64",
    "syslog",
    # Walking around the filesystem's boundaries with file handles ("shocker").
    "open_by_handle_at",
    # Big kernel attack surface with little use in a lab: io_uring (refused by Docker
    # since 25.0; programs fall back to epoll and threads, as where a kernel turns it
    # off), userfaultfd (stretches kernel races in exploits).
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    # Other processes' NUMA placement (refused by Docker whatever the capabilities).
    "migrate_pages",
    "move_pages",
    # Obsolete.
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "nfsservctl",
    "vm86",
    "vm86old",
    "afs_syscall",
    "tuxcall",
    "security",
    "vserver",
    "getpmsg",
    "putpmsg",
)

# libseccomp architectures per family: the native ABI first, then the compat ones.
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64",),
    "aarch64": ("SCMP_ARCH_AARCH64",),
}
LXC_ARCHITECTURES = {"x86_64": "x86_64", "aarch64": "arm64"}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def _family(arch: str | None) -> str:
    name = (arch or platform.machine()).lower()
    name = _ALIASES.get(name, name)
    if name not in ARCHITECTURES:
        raise RuntimeFailure(
            f"machines cannot run on {name!r} hosts",
            detail=f"seccomp profiles exist for {', '.join(ARCHITECTURES)} only",
        )
    return name


def allowed(arch: str | None = None) -> tuple[str, ...]:
    """Every syscall allowed without condition on `arch`, sorted."""
    family = _family(arch)
    return tuple(sorted({*ALLOWED, *ARCH_ALLOWED[family], *NEWER_ALLOWED}))


def _rule(name: str, op: str, value: int) -> dict[str, Any]:
    return {
        "names": [name],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": value, "op": op}],
    }


def profile(arch: str | None = None) -> dict[str, Any]:
    """The `linux.seccomp` object of a machine on `arch` (default: this host's)."""
    family = _family(arch)
    # One rule per value: runc 1.1 ORs conditions that test the same argument.
    conditional = [
        _rule("socket", "SCMP_CMP_LT", SOCKET_FAMILIES_BELOW),
        *(_rule("socket", "SCMP_CMP_EQ", af) for af in SOCKET_FAMILIES),
        *(_rule("personality", "SCMP_CMP_EQ", p) for p in PERSONALITIES),
    ]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": list(ARCHITECTURES[family]),
        "syscalls": [
            {"names": list(allowed(family)), "action": "SCMP_ACT_ALLOW"},
            *conditional,
            {"names": list(NOT_IMPLEMENTED), "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
        ],
    }


def lxc_policy(arch: str | None = None) -> str:
    """The same filter as `profile`, in liblxc's seccomp policy language (version 2), for
    engines built on liblxc (LXD's and Incus's `raw.seccomp`): unlisted calls fail with EPERM,
    the keyring calls with ENOSYS."""
    family = _family(arch)
    # Rules under the native architecture only: liblxc's compat filters (i386, x32) keep
    # the default, so 32-bit programs are refused as runc's profile refuses them.
    lines = ["2", f"allowlist errno {EPERM}", f"[{LXC_ARCHITECTURES[family]}]"]
    lines += allowed(family)
    lines += [f"socket allow [0,{SOCKET_FAMILIES_BELOW},SCMP_CMP_LT]"]
    lines += [f"socket allow [0,{af},SCMP_CMP_EQ]" for af in SOCKET_FAMILIES]
    lines += [f"personality allow [0,{p},SCMP_CMP_EQ]" for p in PERSONALITIES]
    lines += [f"{name} errno {ENOSYS}" for name in NOT_IMPLEMENTED]
    return "\n".join(lines) + "\n"
