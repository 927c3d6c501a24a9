"""A real two-member LXD cluster on this one host, for tests of the lxd driver's cluster paths.

Like tests/lxd_daemon.py, every daemon is started by hand (no systemd, nothing of the host's
/var/lib/lxd touched) with an LXD_DIR of its own and a btrfs loop pool named `labyard`. Each
member runs in a network namespace of its own, joined to a host bridge by a veth pair, so the two
daemons have addresses of their own (198.51.100.11 and .12) and can form a cluster:

    host  <prefix>br0 198.51.100.1/24
           ├── veth <prefix>-m1 ── eth0 198.51.100.11 in netns <prefix>-m1 ── lxd (LXD_DIR …/m1)
           └── veth <prefix>-m2 ── eth0 198.51.100.12 in netns <prefix>-m2 ── lxd (LXD_DIR …/m2)

A daemon is not started with `ip netns exec`: that mounts a fresh /sys in a new mount namespace,
which hides the cgroup mounts under /sys/fs/cgroup, and containers then die with `Failed to create
/init.scope control group`. Instead the cgroup tree is bind-mounted aside, a sysfs of the netns is
mounted on /sys, and the cgroup tree is moved back on top of it (/work/shared/notes/lxd-cluster.md).

The addresses are fixed, so one cluster at a time runs on a host. `start()` cleans up what a
crashed session of the same prefix left (when the process that made it is gone) and refuses to
touch a cluster that a live process still owns. `stop()` leaves nothing: daemons and what they
started (dnsmasq, forkproxy, container monitors and containers), the cgroups of containers it had
to kill, mounts, loop devices, namespaces, links, directories and liblxc's lock directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.lxd_daemon import (
    POOL,
    Daemon,
    simple_quotas,
)  # the same pool name, the same daemon handle

NETWORK = "198.51.100"
GATEWAY = f"{NETWORK}.1"
PORT = 8443
NAMES = ("m1", "m2")
CGROUPS = Path("/sys/fs/cgroup")
LXC_LOCKS = Path("/run/lxc/lock")


@dataclass
class Member(Daemon):
    """A member's daemon (its dir, process, socket, `lxc`), in a network namespace of its own."""

    name: str = ""
    address: str = ""
    netns: str = ""

    @property
    def https_address(self) -> str:
        return f"{self.address}:{PORT}"


@dataclass
class Cluster:
    members: list[Member]
    bridge: str
    dir: Path  # the members' dirs are in it
    prefix: str
    _pivots: set[Path] = field(default_factory=set, repr=False)  # lxc.pivot dirs before start

    def member(self, name: str) -> Member:
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(name)

    def kill(self, name: str) -> None:
        """SIGKILL the member's daemon only, as on a host that was lost: its containers (and
        their monitors, dnsmasq, forkproxy) keep running."""
        member = self.member(name)
        with contextlib.suppress(ProcessLookupError):
            member.process.send_signal(signal.SIGKILL)
        member.process.wait()

    def restart(self, name: str) -> None:
        """Start a killed member's daemon again (same dir, same netns), wait until it is ready
        and until another running member sees it ONLINE."""
        member = self.member(name)
        if member.process.poll() is None:
            raise RuntimeError(f"the daemon of {name} is still running")
        member.process = _spawn(member.dir, member.netns)
        _wait_ready(member)
        # Ready is not yet ONLINE to the others: that takes a heartbeat (about 1.5 s).
        observer = next(
            (
                other
                for other in self.members
                if other is not member and other.process.poll() is None
            ),
            member,
        )
        _wait_online(observer, [name], 60)


def start(pool_size: str = "30GiB", prefix: str = "lyc") -> Cluster:
    """Start a two-member cluster (m1 bootstrapped, m2 joined) with a btrfs pool `labyard` of
    `pool_size` on each member. Raises RuntimeError (after cleaning up) when it cannot."""
    if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", prefix):
        raise ValueError(f"prefix {prefix!r}: 1-10 lowercase letters or digits (link names)")
    _clean_leftovers(prefix)
    _check_network_free(prefix)
    base = Path(tempfile.mkdtemp(prefix=f"labyard-{prefix}-cluster-"))
    base.chmod(0o711)  # unprivileged machines' ids must traverse to their rootfs
    (base / "owner").write_text(_identity(os.getpid()))
    cluster = Cluster([], f"{prefix}br0", base, prefix, _lxc_pivots())
    try:
        _ip("link", "add", cluster.bridge, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/24", "dev", cluster.bridge)
        _ip("link", "set", cluster.bridge, "up")
        for index, name in enumerate(NAMES):
            netns, address = f"{prefix}-{name}", f"{NETWORK}.{11 + index}"
            _ip("netns", "add", netns)
            _ip("link", "add", netns, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("link", "set", netns, "master", cluster.bridge, "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")
            _ip("-n", netns, "route", "add", "default", "via", GATEWAY)
            directory = base / name
            directory.mkdir(mode=0o711)
            directory.chmod(0o711)
            cluster.members.append(
                Member(directory, _spawn(directory, netns), name, address, netns)
            )
        for member in cluster.members:
            _wait_ready(member)
        first, second = cluster.members
        _preseed(first, _bootstrap_preseed(first, pool_size))
        token = _run(["lxc", "cluster", "add", second.name], first.env).stdout.split()[-1]
        _preseed(second, _join_preseed(second, first, token, pool_size))
        for member in cluster.members:
            simple_quotas(member.process.pid, member.dir)
        _wait_online(first, list(NAMES), 60)
    except BaseException as exc:
        logs = _logs(cluster)
        stop(cluster)
        if isinstance(exc, Exception):
            raise RuntimeError(f"the LXD cluster did not start: {exc}\n{logs}") from exc
        raise
    return cluster


def stop(cluster: Cluster) -> None:
    """Shut the daemons down (the joined member first, so the database's member goes last) and
    take everything of the cluster away."""
    for member in reversed(cluster.members):
        if member.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    ["lxd", "shutdown", "--timeout", "30"],
                    env=member.env,
                    capture_output=True,
                    check=False,
                    timeout=45,
                )
    for member in cluster.members:
        try:
            member.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            member.process.kill()
            member.process.wait()
    _teardown(cluster.prefix, cluster.dir)
    for pivot in _lxc_pivots() - cluster._pivots:  # liblxc leaves these; only ours go
        with contextlib.suppress(OSError):
            pivot.rmdir()


def _spawn(directory: Path, netns: str) -> subprocess.Popen[bytes]:
    """The daemon in `netns`, in a mount namespace of its own whose /sys is the netns's sysfs
    with the host's cgroup mounts still under /sys/fs/cgroup (which `ip netns exec` loses)."""
    aside = directory.parent / f".cgroup-{directory.name}"  # where the cgroup tree waits
    aside.mkdir(exist_ok=True)
    log = directory / "lxd.log"
    script = (
        f"mount --rbind /sys/fs/cgroup {shlex.quote(str(aside))}"
        " && mount -t sysfs sysfs /sys"
        f" && mount --move {shlex.quote(str(aside))} /sys/fs/cgroup"
        f" && exec env LXD_DIR={shlex.quote(str(directory))}"
        f" lxd --group root --logfile {shlex.quote(str(log))}"
    )
    with (directory / "daemon.out").open("ab") as out:
        return subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{netns}",
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(member: Member) -> None:
    result = subprocess.run(
        ["lxd", "waitready", "--timeout", "60"],
        env=member.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{member.name} not ready (daemon exit {member.process.poll()}): {result.stderr}"
        )


def _bootstrap_preseed(member: Member, pool_size: str) -> str:
    # No `source:` for the pool: LXD makes the loop file itself (a given path must exist).
    return (
        "config:\n"
        f"  core.https_address: {member.https_address}\n"
        "cluster:\n"
        f"  server_name: {member.name}\n"
        "  enabled: true\n"
        "storage_pools:\n"
        f"- name: {POOL}\n"
        "  driver: btrfs\n"
        "  config:\n"
        f"    size: {pool_size}\n"
    )


def _join_preseed(member: Member, leader: Member, token: str, pool_size: str) -> str:
    return (
        "cluster:\n"
        "  enabled: true\n"
        f"  server_name: {member.name}\n"
        f"  server_address: {member.https_address}\n"
        f"  cluster_address: {leader.https_address}\n"
        f"  cluster_token: {token}\n"
        "  member_config:\n"
        "  - entity: storage-pool\n"
        f"    name: {POOL}\n"
        "    key: size\n"
        f"    value: {pool_size}\n"
        "  - entity: storage-pool\n"
        f"    name: {POOL}\n"
        "    key: source\n"
        '    value: ""\n'
    )


def _preseed(member: Member, preseed: str) -> None:
    _run(["lxd", "init", "--preseed"], member.env, preseed)


def member_states(member: Member) -> dict[str, str]:
    """Each member's status as `member` sees the cluster: ONLINE, OFFLINE, EVACUATED, ..."""
    listing = _run(["lxc", "cluster", "list", "--format", "json"], member.env).stdout
    return {entry["server_name"]: entry["status"].upper() for entry in json.loads(listing)}


def _wait_online(observer: Member, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = member_states(observer)
        if all(states.get(name) == "ONLINE" for name in names):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"members not ONLINE as {observer.name} sees them: {states}")
        time.sleep(0.25)


def _run(
    argv: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, input=stdin, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _ip(*args: str) -> None:
    _run(["ip", *args], dict(os.environ))


def _logs(cluster: Cluster) -> str:
    parts = []
    for member in cluster.members:
        with contextlib.suppress(OSError):  # lxd.log and more: stderr has any panic too
            parts.append(f"--- {member.name}\n{(member.dir / 'daemon.out').read_text()[-4000:]}")
    return "\n".join(parts)


# Leftovers and teardown ---------------------------------------------------------------------


def _identity(pid: int) -> str:
    """pid and start time: a pid alone may have been reused by the time anyone reads it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return f"{pid} {stat.rsplit(')', 1)[1].split()[19]}"


def _clean_leftovers(prefix: str) -> None:
    """Take away what an earlier session of this prefix left, unless a live process owns it."""
    stale = []
    for base in Path(tempfile.gettempdir()).glob(f"labyard-{prefix}-cluster-*"):
        try:
            owner = (base / "owner").read_text()
        except OSError:
            owner = ""
        pid = owner.split()[0] if owner else ""
        if pid.isdigit() and int(pid) != os.getpid() and _identity(int(pid)) == owner:
            raise RuntimeError(f"{base}: an LXD cluster of prefix {prefix!r} of live pid {pid}")
        stale.append(base)
    for base in stale:
        _teardown(prefix, base)
    if not stale:
        _teardown(prefix, None)  # namespaces or links without a directory


def _check_network_free(prefix: str) -> None:
    addresses = _run(["ip", "-o", "-4", "addr", "show"], dict(os.environ)).stdout
    for line in addresses.splitlines():
        if f" {NETWORK}." in line and line.split()[1] != f"{prefix}br0":
            raise RuntimeError(f"{NETWORK}.0/24 is in use on the host: {line}")


def _teardown(prefix: str, base: Path | None) -> None:
    """Kill every process of the cluster (those in its network namespaces, those using `base`,
    and all in the daemons' mount namespaces), then take away the containers' cgroups, mounts,
    loop devices, namespaces, links, directories and lock directories."""
    netnses = [f"{prefix}-{name}" for name in NAMES]
    present = set(_run(["ip", "netns", "list"], dict(os.environ)).stdout.split())
    pids: set[int] = set()
    for netns in netnses:
        if netns in present:
            pids |= {
                int(pid)
                for pid in subprocess.run(
                    ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False
                ).stdout.split()
            }
    if base is not None:
        pids |= _processes_using(base)
    _kill(_with_namespace_mates(pids))
    if base is not None:
        _unmount_under(base)
        _detach_loops_under(base)
    for netns in netnses:
        if netns in present:
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)
    for link in [*netnses, f"{prefix}br0"]:
        if Path("/sys/class/net", link).exists():
            subprocess.run(["ip", "link", "delete", link], capture_output=True, check=False)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(LXC_LOCKS / str(base).lstrip("/"), ignore_errors=True)


def _kill(pids: set[int]) -> None:
    """SIGKILL `pids` and all their descendants (a container's init dies with its monitor),
    then remove the cgroups they were in that are not ours (those of the containers)."""
    pids = _with_descendants(pids) - {os.getpid(), os.getppid()}
    if not pids:
        return
    cgroups = {path for pid in pids for path in _cgroups(pid)}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    for _ in range(20):
        _remove_cgroups(cgroups)
        if not any(path.exists() for path in cgroups):
            break
        time.sleep(0.25)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _with_descendants(pids: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(proc.name))
    found: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _cgroup_mounts() -> list[tuple[set[str], Path]]:
    """Each cgroup hierarchy's mount with its options (a cgroup2 one with no options)."""
    mounts: list[tuple[set[str], Path]] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        kind, options = fields[fields.index("-") + 1], fields[-1]
        if kind == "cgroup2":
            mounts.append((set(), Path(fields[4])))
        elif kind == "cgroup":
            mounts.append((set(options.split(",")), Path(fields[4])))
    return mounts


def _cgroups(pid: int) -> list[Path]:
    """The cgroups of `pid` that liblxc made (lxc.payload.*, lxc.monitor.*), as directories."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    mounts = _cgroup_mounts()
    paths = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        parts = path.strip("/").split("/")
        first = next((i for i, part in enumerate(parts) if part.startswith("lxc.")), None)
        if first is None:
            continue
        relative = Path(*parts[: first + 1])  # the whole tree liblxc made, not just the leaf
        wanted = set(controllers.split(",")) if controllers else set()
        for options, mount in mounts:
            if (wanted and wanted <= options) or (not wanted and not options):
                paths.append(mount / relative)
                break
    return paths


def _remove_cgroups(cgroups: Iterable[Path]) -> None:
    for cgroup in cgroups:
        if not cgroup.is_dir():
            continue
        inner = sorted(
            (Path(root) for root, _, _ in os.walk(cgroup)), key=lambda p: len(p.parts), reverse=True
        )
        for directory in inner:  # the deepest first: a cgroup goes only when it is empty
            with contextlib.suppress(OSError):
                directory.rmdir()


def _lxc_pivots() -> set[Path]:
    return {path for path in CGROUPS.glob("*/lxc.pivot") if path.is_dir()} | (
        {CGROUPS / "lxc.pivot"} if (CGROUPS / "lxc.pivot").is_dir() else set()
    )


def _processes_using(base: Path) -> set[int]:
    """Processes whose command line, working directory or open files are under `base`: the
    daemons, container monitors, dnsmasq, and a forkproxy (its log is there) that a killed
    daemon left behind in a container's namespaces with no parent but init."""
    prefix = f"{base}/"
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if prefix.encode() in (proc / "cmdline").read_bytes() or any(
                os.readlink(link).startswith(prefix)
                for link in [proc / "cwd", *(proc / "fd").iterdir()]
            ):
                found.add(int(proc.name))
    return found


def _with_namespace_mates(pids: set[int]) -> set[int]:
    """`pids` and every process in their mount namespaces other than the host's: a daemon's
    namespace is made by its `unshare -m`, so all in it are the daemon's."""
    host = {_namespace(os.getpid(), "mnt"), _namespace(1, "mnt"), ""}
    namespaces = {_namespace(pid, "mnt") for pid in pids} - host
    if not namespaces:
        return set(pids)
    return set(pids) | {
        int(proc.name)
        for proc in Path("/proc").iterdir()
        if proc.name.isdigit() and _namespace(int(proc.name), "mnt") in namespaces
    }


def _namespace(pid: int, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def _unmount_under(base: Path) -> None:
    for _ in range(5):
        mounts = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4] == str(base) or line.split()[4].startswith(f"{base}/")
        ]
        if not mounts:
            return
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        time.sleep(0.2)


def _detach_loops_under(base: Path) -> None:
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            if backing.read_text().strip().startswith(f"{base}/"):
                device = f"/dev/{backing.parent.parent.name}"
                subprocess.run(["losetup", "-d", device], capture_output=True, check=False)
