"""LXD (or Incus) daemons of the tests' own: started by hand (no systemd here, and nothing of
the host's /var/lib/lxd or /var/lib/incus touched), each in a directory of its own with a
btrfs pool in a loop file (btrfs keeps disk limits; a `dir` pool would not), and taken away
with everything in them. Incus is LXD's fork: the same daemon flags and preseed, its own
names for the binaries and the directory variable (`Engine`).

Their pools keep disk limits with btrfs *simple* quotas (`simple_quotas`), as docs/cluster.md
tells operators to: with the full quota groups LXD would otherwise turn on, every start
gets slower with each machine already made from the same image."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

POOL = "labyard"
QUOTA_CTL = 0xC0109428
"""BTRFS_IOC_QUOTA_CTL (linux/btrfs.h): Debian 12's btrfs-progs is older than `btrfs quota
enable --simple`, the kernel call is not."""
ENABLE_SIMPLE_QUOTA = 4
"""BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA: kernel 6.7 or later."""


def simple_quotas(daemon_pid: int, directory: Path) -> None:
    """Turn on btrfs simple quotas in the pool the daemon has mounted (in its own mount
    namespace, maybe) under `directory`, before any disk limit is set: LXD then finds quotas
    on and keeps them. A full quota group walks every snapshot sharing an extent on each
    change, so LXD's first-start change of owner of every file (its remap) took 0.14 s
    longer for each container already made from the image; with simple quotas it stays
    flat (medians of starts 11-20 and 21-30 on a 2-core host: 3.5 and 3.6 s, against 5.4
    and 6.8 s).
    A machine's limit then counts what it writes, not the image it started from, as the
    local driver's disk file does. On an older kernel the pool keeps LXD's own quotas."""
    pool = Path(f"/proc/{daemon_pid}/root") / str(directory).lstrip("/") / "storage-pools" / POOL
    handle = os.open(pool, os.O_RDONLY)
    try:
        fcntl.ioctl(handle, QUOTA_CTL, struct.pack("QQ", ENABLE_SIMPLE_QUOTA, 0))
    except OSError:  # EINVAL before 6.7: correct, only slower
        pass
    finally:
        os.close(handle)


@dataclass(frozen=True)
class Engine:
    daemon: str
    client: str
    admin: tuple[str, ...]
    """How the daemon's own subcommands (waitready, init, shutdown) are called."""
    dir_variable: str


LXD = Engine("lxd", "lxc", ("lxd",), "LXD_DIR")
INCUS = Engine("/usr/libexec/incus/incusd", "incus", ("incus", "admin"), "INCUS_DIR")


@dataclass
class Daemon:
    dir: Path
    process: subprocess.Popen[bytes]
    engine: Engine = field(default=LXD, kw_only=True)

    @property
    def url(self) -> str:
        return f"unix://{self.dir / 'unix.socket'}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, self.engine.dir_variable: str(self.dir)}

    def lxc(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The engine's client (`lxc`, `incus`) against this daemon's unix socket."""
        return subprocess.run(
            [self.engine.client, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def start(pool_size: str = "40GiB", engine: Engine = LXD) -> Daemon:
    directory = Path(tempfile.mkdtemp(prefix=f"labyard-{engine.client}-"))
    directory.chmod(0o711)  # unprivileged machines' ids must traverse to their rootfs
    env = {**os.environ, engine.dir_variable: str(directory)}
    log = directory / "daemon.out"
    process = subprocess.Popen(
        [engine.daemon, "--group", "root", "--logfile", str(directory / "daemon.log")],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    daemon = Daemon(directory, process, engine=engine)
    try:
        subprocess.run(
            [*engine.admin, "waitready", "--timeout", "60"],
            env=env,
            check=True,
            capture_output=True,
        )
        preseed = (
            f"storage_pools:\n- name: {POOL}\n  driver: btrfs\n  config:\n    size: {pool_size}\n"
        )
        subprocess.run(
            [*engine.admin, "init", "--preseed"],
            input=preseed.encode(),
            env=env,
            check=True,
            capture_output=True,
        )
        simple_quotas(process.pid, directory)
    except (subprocess.CalledProcessError, OSError) as exc:
        stop(daemon)
        detail = getattr(exc, "stderr", b"") or b""
        raise RuntimeError(
            f"{engine.client} did not start: {exc} {detail.decode()} {log.read_text()}"
        ) from exc
    return daemon


def stop(daemon: Daemon) -> None:
    """Shut the daemon down and leave nothing: its mounts, directory and liblxc's lock dir."""
    subprocess.run(
        [*daemon.engine.admin, "shutdown", "--timeout", "60"],
        env=daemon.env,
        capture_output=True,
        check=False,
    )
    try:
        daemon.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.process.kill()
        daemon.process.wait()
    for pid in _processes_of(daemon.dir):  # dnsmasq, forkproxy: left by a daemon that died
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for _ in range(3):
        mounts = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(daemon.dir))
        ]
        if not mounts:
            break
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        time.sleep(0.2)
    shutil.rmtree(daemon.dir, ignore_errors=True)
    shutil.rmtree(Path("/run/lxc/lock") / str(daemon.dir).lstrip("/"), ignore_errors=True)


def _processes_of(directory: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if str(directory).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found
