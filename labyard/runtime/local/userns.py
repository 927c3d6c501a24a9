"""A machine's user namespace, the network namespace it owns, and idmapped image mounts.

The user namespace maps uid/gid 0..65535 inside to the machine's host range. It is made
before runc runs, with the machine's network namespace created in the same unshare(2): a
network namespace belongs to the user namespace that made it, and only then may root in
the machine configure its own interfaces, iptables and bridges (dockerd needs all three)
and mount sysfs. Both are kept alive by bind mounts of their nsfs files, as `ip netns`
does; runc joins them by path.

Debian 12's runc (1.1.5) has no idmapped mounts of its own, so the image is mounted here:
open_tree(2) clones the image directory's mount, mount_setattr(2) maps it through the
machine's user namespace, move_mount(2) attaches it under the machine's directory, and the
overlayfs root takes it as its lower layer. A file owned by 0 in the image is then owned by
the machine's root, and the image itself stays shared and unchanged on disk.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
from pathlib import Path

from labyard.errors import RuntimeFailure
from labyard.runtime.local.idmap import IdRange

_libc = ctypes.CDLL(None, use_errno=True)

MS_BIND = 0x1000
MNT_DETACH = 0x2

# New mount API; the numbers are the same on every architecture since Linux 5.2.
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_IDMAP = 0x100000


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _fail(what: str) -> RuntimeFailure:
    code = ctypes.get_errno()
    return RuntimeFailure(
        f"cannot {what}", detail=f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"
    )


def _bind(source: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(exist_ok=True)
    if _libc.mount(source.encode(), str(target).encode(), None, MS_BIND, None) != 0:
        raise _fail(f"keep namespace {target}")


def create(user_path: Path, net_path: Path, ids: IdRange) -> None:
    """Make the user namespace (mapped to `ids`) and a network namespace it owns; keep both.

    A helper process made by unshare(1) holds them while they are mapped and bind-mounted
    (a fork of this multi-threaded process could deadlock in its child), then exits.
    """
    try:
        holder = subprocess.Popen(
            ["unshare", "--user", "--net", "--", "sh", "-c", "echo ready; read _"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise RuntimeFailure("unshare is not installed; run scripts/setup.sh first") from exc
    assert holder.stdin is not None and holder.stdout is not None  # both are pipes
    try:
        if holder.stdout.readline() != b"ready\n":
            error = holder.stderr.read().decode(errors="replace") if holder.stderr else ""
            raise RuntimeFailure("cannot create the machine's user namespace", detail=error)
        mapping = f"0 {ids.start} {ids.size}\n"
        Path(f"/proc/{holder.pid}/uid_map").write_text(mapping)
        Path(f"/proc/{holder.pid}/gid_map").write_text(mapping)
        _bind(f"/proc/{holder.pid}/ns/user", user_path)
        _bind(f"/proc/{holder.pid}/ns/net", net_path)
    finally:
        holder.stdin.close()
        holder.wait()
        holder.stdout.close()
        if holder.stderr:
            holder.stderr.close()


MAX_STACKED = 16
"""More mounts than this on one namespace file is not labyard's doing: stop detaching."""


def detach(path: Path) -> bool:
    """Lazily detach the mount on top of `path`; False when none can be reached there.

    Copies of the mount in other mount namespaces (a process that unshared its mounts, a
    service with PrivateTmp=) do not stop this: they are theirs, and what they keep alive
    goes when they go. A mount hidden in this namespace, under a mount over one of `path`'s
    parents, cannot be reached by path: EINVAL, as for no mount at all.
    """
    if _libc.umount2(str(path).encode(), MNT_DETACH) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOENT):
        return False
    raise _fail(f"detach the mount on {path}")


def remove(path: Path) -> bool:
    """Let go of a kept namespace file; gone already is fine. False when the file stays.

    It stays when a mount of it in this mount namespace cannot be reached: `ip netns add`,
    the first time, binds /run/netns over itself (recursively, so the mounts already there
    are copied on top), which hides the originals underneath. Unlinking the mount point of
    a mount of one's own namespace is EBUSY. The namespace is inert by then (its machine
    is gone); the file is left for a later destroy (the reconciler's orphan pass), which
    removes it once whatever hides the mount is gone.
    """
    for _ in range(MAX_STACKED):  # a bind over a bind: one detach each
        if not detach(path):
            break
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return False
        raise RuntimeFailure(f"cannot remove namespace file {path}", detail=str(exc)) from exc
    return True


def mount_idmapped(source: Path, target: Path, user_path: Path) -> None:
    """Mount `source` read-only at `target`, its ids mapped through the user namespace."""
    target.mkdir(parents=True, exist_ok=True)
    syscall = _libc.syscall
    tree = syscall(
        SYS_OPEN_TREE, AT_FDCWD, str(source).encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC
    )
    if tree < 0:
        raise _fail(f"clone the mount of {source}")
    userns = os.open(user_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        attr = _MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, 0, 0, userns)
        if (
            syscall(
                SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)
            )
            != 0
        ):
            raise _fail(f"map the ids of {source} (idmapped mounts need Linux 5.12 or newer)")
        if (
            syscall(
                SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, str(target).encode(), MOVE_MOUNT_F_EMPTY_PATH
            )
            != 0
        ):
            raise _fail(f"attach the image at {target}")
    finally:
        os.close(userns)
        os.close(tree)
