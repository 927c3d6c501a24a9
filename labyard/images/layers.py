"""Applying image layers (tar streams) to a root filesystem, as a container runtime does.

Each entry lands where it would inside the machine: paths are resolved with the root
filesystem as `/`, so a symlink an earlier layer made (`/bin -> usr/bin`, or a hostile
`/x -> /etc`) never leads out of it, and a member whose name climbs out with `..` refuses
the whole archive. Whiteouts (OCI image spec): `.wh.NAME` removes NAME from the layers
below, `.wh..wh..opq` empties its directory of what the layers below put there. Owners,
modes (setuid included), times and extended attributes (`security.capability`, ...) are
kept as numbers: the image's root is uid 0 on the host, idmapped into each machine.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from labyard.errors import InvalidInput

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_MAX_LINKS = 40
_XATTR = "SCHILY.xattr."

Opener = Callable[[], IO[bytes] | None]
"""Opens a regular file member's content."""


def _parts(name: str, where: str) -> list[str]:
    parts = [p for p in PurePosixPath(name).parts if p not in ("/", ".", "")]
    if ".." in parts:
        raise InvalidInput(f"{where}: member {name!r} climbs out of the root filesystem")
    return parts


def resolve_inside(root: Path, parts: list[str], where: str) -> Path:
    """The host path of `/parts...` with `root` as `/`, following symlinks without leaving
    it (`..` at the root stays at the root, as in the machine)."""
    pending = list(parts)
    resolved = root
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            resolved = resolved.parent if resolved != root else root
            continue
        candidate = resolved / part
        if candidate.is_symlink():
            hops += 1
            if hops > _MAX_LINKS:
                raise InvalidInput(f"{where}: too many symbolic links under {'/'.join(parts)}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = root
            pending = [p for p in PurePosixPath(target).parts if p != "/"] + pending
            continue
        resolved = candidate
    return resolved


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _parent_dir(root: Path, parts: list[str], where: str) -> Path:
    """The directory an entry goes into, made (root's, 0755) where missing."""
    parent = resolve_inside(root, parts[:-1], where)
    if not parent.is_dir():
        if parent.exists() or parent.is_symlink():
            parent.unlink()
        parent.mkdir(mode=0o755, parents=True)
    if not parent.resolve().is_relative_to(root.resolve()):
        raise InvalidInput(f"{where}: {'/'.join(parts)} leads out of the root filesystem")
    return parent


class LayerWriter:
    """Applies layers, in order, to one root filesystem."""

    def __init__(self, root: Path, where: str) -> None:
        self.root = root
        self.where = where
        root.mkdir(parents=True, exist_ok=True)

    def apply(self, entries: Iterable[tuple[tarfile.TarInfo, Opener]]) -> None:
        """One layer: `(member, open its content)` in archive order."""
        made: set[Path] = set()
        for member, opener in entries:
            parts = _parts(member.name, self.where)
            if not parts:
                continue  # the root itself
            base = parts[-1]
            parent = _parent_dir(self.root, parts, self.where)
            if base == OPAQUE:
                for child in list(parent.iterdir()):
                    if child not in made:
                        _remove(child)
                continue
            if base.startswith(WHITEOUT):
                _remove(parent / base[len(WHITEOUT) :])
                continue
            target = parent / base
            self._write(member, target, opener)
            made.add(target)

    def _write(self, member: tarfile.TarInfo, target: Path, opener: Opener) -> None:
        keep_dir = member.isdir() and target.is_dir() and not target.is_symlink()
        if not keep_dir:
            _remove(target)
        if member.isdir():
            if not keep_dir:
                target.mkdir(mode=0o700)
        elif member.isreg():
            self._regular(target, opener)
        elif member.issym():
            os.symlink(member.linkname, target)
        elif member.islnk():
            source = resolve_inside(self.root, _parts(member.linkname, self.where), self.where)
            if not source.resolve().is_relative_to(self.root.resolve()) or not source.exists():
                raise InvalidInput(
                    f"{self.where}: hard link {member.name!r} to {member.linkname!r}, "
                    "which is not in the image"
                )
            os.link(source, target, follow_symlinks=False)
            return  # the same inode: its owner and mode are the original's
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(target, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        elif member.isfifo():
            os.mkfifo(target, 0o600)
        else:
            return  # no other kind of member is a file
        self._metadata(member, target)

    def _regular(self, target: Path, opener: Opener) -> None:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            source = opener()
            if source is not None:
                with source:
                    shutil.copyfileobj(source, out, 1 << 20)

    def _metadata(self, member: tarfile.TarInfo, target: Path) -> None:
        os.chown(target, member.uid, member.gid, follow_symlinks=False)
        for key, value in member.pax_headers.items():
            if key.startswith(_XATTR):
                raw = value.encode("utf-8", "surrogateescape")
                try:
                    os.setxattr(target, key[len(_XATTR) :], raw, follow_symlinks=False)
                except OSError as exc:
                    raise InvalidInput(
                        f"{self.where}: cannot keep attribute {key[len(_XATTR) :]} of "
                        f"{member.name}: {exc.strerror}"
                    ) from exc
        if not member.issym():
            os.chmod(target, member.mode & 0o7777)  # after chown, which clears setuid
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def tar_entries(tar: tarfile.TarFile) -> Iterable[tuple[tarfile.TarInfo, Opener]]:
    """A tar stream's members with their content, read in order."""
    for member in tar:
        yield member, (lambda m=member: tar.extractfile(m))  # type: ignore[misc]
