"""LXD daemons of the tests' own: started by hand (no systemd here, and nothing of the host's
/var/lib/lxd touched), each in a directory of its own with a btrfs pool in a loop file (btrfs
keeps disk limits; a `dir` pool would not), and taken away with everything in them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

POOL = "labyard"


@dataclass
class Daemon:
    dir: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"unix://{self.dir / 'unix.socket'}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "LXD_DIR": str(self.dir)}

    def lxc(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`lxc` against this daemon's unix socket."""
        return subprocess.run(
            ["lxc", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )


def start(pool_size: str = "40GiB") -> Daemon:
    directory = Path(tempfile.mkdtemp(prefix="labyard-lxd-"))
    directory.chmod(0o711)  # unprivileged machines' ids must traverse to their rootfs
    env = {**os.environ, "LXD_DIR": str(directory)}
    log = directory / "daemon.out"
    process = subprocess.Popen(
        ["lxd", "--group", "root", "--logfile", str(directory / "lxd.log")],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    daemon = Daemon(directory, process)
    try:
        subprocess.run(
            ["lxd", "waitready", "--timeout", "60"], env=env, check=True, capture_output=True
        )
        preseed = (
            f"storage_pools:\n- name: {POOL}\n  driver: btrfs\n  config:\n    size: {pool_size}\n"
        )
        subprocess.run(
            ["lxd", "init", "--preseed"],
            input=preseed.encode(),
            env=env,
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        stop(daemon)
        detail = getattr(exc, "stderr", b"") or b""
        raise RuntimeError(f"LXD did not start: {exc} {detail.decode()} {log.read_text()}") from exc
    return daemon


def stop(daemon: Daemon) -> None:
    """Shut the daemon down and leave nothing: its mounts, directory and liblxc's lock dir."""
    subprocess.run(
        ["lxd", "shutdown", "--timeout", "60"], env=daemon.env, capture_output=True, check=False
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
