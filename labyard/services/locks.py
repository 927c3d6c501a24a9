"""Per-playground locks that hold across processes (CLI, server, reconciler) on one host."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path


@asynccontextmanager
async def playground_lock(locks_dir: Path, playground_id: str) -> AsyncIterator[None]:
    """Exclusive while held: start, stop, destroy and reconcile of one playground never mix."""
    locks_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks_dir / f"{playground_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def try_lock(locks_dir: Path, playground_id: str) -> int | None:
    """A non-blocking lock for the reconciler: a playground busy elsewhere is skipped."""
    locks_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks_dir / f"{playground_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
