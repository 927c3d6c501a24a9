"""Host kernel limits that a host full of system containers outgrows, raised at driver start.

Measured with bench/density.py (it prints these per run, tightest first), per idle `linux`
machine, and where Debian's default runs out:

- inotify: ~7 instances (systemd, dbus, logind) and ~22 watches. The instances count per
  uid -- all root's without user namespaces -- so the default 128 runs out at ~15 booting
  machines (PID 1: "Failed to create inotify object"), and 8,192 at ~1,100.
- tasks: 5 in an idle machine (systemd, journald, logind, dbus, sshd), ~20 once a learner's
  shell, tmux and checks run, far more with dockerd. kernel.pid_max (32,768) counts every
  process and thread of the host: ~1,600 machines in use. Raised to the 64-bit maximum, as
  systemd does on most distributions; kernel.threads-max (from RAM, ~190,000 here) is ample.
- neighbours: ~3 (the host's entry for the machine, the machine's for its gateway), all in
  one kernel table; past gc_thresh3 (1,024: ~350 machines) new entries are refused
  ("neighbour table overflow") and the newest machines stop answering.
- keys: ~1 per machine uid (keyctl, add_key and request_key are ENOSYS inside machines, see
  seccomp.py); a uid other than root may hold 200 keys / 20,000 bytes. Raised as LXD
  advises, in case machines (a nested runc joins a keyring per container) ever may.
- aio: fs.aio-max-nr (65,536 requests host-wide) is shared by every database in machines.

Not raised, because they do not bind first: loop devices (/dev/loop-control makes more on
demand past max_loop, up to 2^20; 300 tried), bridges (no limit; 1,024 ports each, and a
playground has at most 16 machines), nftables (no rule limit; ~4 rules per bridge),
conntrack (262,144; ~3 per idle machine), namespaces (user.max_*_namespaces ~96,000),
mounts (fs.mount-max 100,000; ~5 per machine), memory cgroups (~11 per machine against
the kernel's fixed 65,535 memcg ids: ~6,000 machines) and memory itself (~15 MiB per idle
machine, host-wide: ~1,500 machines in 24 GiB).

scripts/setup.sh makes the same values permanent in /etc/sysctl.d/60-labyard.conf; this
raises them for a host that was set up otherwise. A limit is only ever raised, never lowered.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

SYSCTL = Path("/proc/sys")
MINIMUMS = {
    "fs.inotify.max_user_instances": 65536,
    "fs.inotify.max_user_watches": 1048576,
    "kernel.pid_max": 4194304,
    "net.ipv4.neigh.default.gc_thresh1": 8192,
    "net.ipv4.neigh.default.gc_thresh2": 32768,
    "net.ipv4.neigh.default.gc_thresh3": 65536,
    "net.ipv6.neigh.default.gc_thresh1": 8192,
    "net.ipv6.neigh.default.gc_thresh2": 32768,
    "net.ipv6.neigh.default.gc_thresh3": 65536,
    "kernel.keys.maxkeys": 2000,
    "kernel.keys.maxbytes": 2000000,
    "fs.aio-max-nr": 524288,
}
"""sysctl name -> the least labyard wants: room for several thousand machines."""


def sysctl_path(name: str) -> Path:
    return SYSCTL / name.replace(".", "/")


def raise_host_limits() -> None:
    for name, minimum in MINIMUMS.items():
        path = sysctl_path(name)
        try:
            if int(path.read_text()) < minimum:
                path.write_text(f"{minimum}\n")
                log.info("raised %s to %d", name, minimum)
        except (OSError, ValueError) as exc:
            log.warning("cannot raise %s to %d: %s", name, minimum, exc)
