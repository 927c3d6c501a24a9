"""Keep a content tree fresh while an author edits it.

No thread and no inotify: whoever asks for the tree (an HTTP request, a page polling the
version) triggers a check at most once per `interval_s`. A check compares the size and
mtime of every file under the root (hidden folders skipped) with the last snapshot and
reloads the whole tree when anything changed, was added or was removed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from labyard.content.loader import ContentTree, load_tree

Snapshot = dict[str, tuple[int, int]]


class ContentWatcher:
    def __init__(
        self,
        root: Path,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.interval_s = interval_s
        """Least time between two looks at the files: a check walks the whole folder."""
        self.clock = clock
        self.version = 0
        """Goes up by one each time the tree is reloaded."""
        self._lock = threading.Lock()
        self._snapshot: Snapshot = {}
        self._checked_at = float("-inf")
        self._tree: ContentTree | None = None

    def tree(self) -> ContentTree:
        """The current tree, reloaded first when files changed."""
        self.check()
        if self._tree is None:  # only when load_tree raised on the first check
            raise RuntimeError("content tree not loaded")
        return self._tree

    def check(self, force: bool = False) -> bool:
        """Reload when files changed since the last check; True when it reloaded."""
        with self._lock:
            now = self.clock()
            if not force and self._tree is not None and now - self._checked_at < self.interval_s:
                return False
            self._checked_at = now
            snapshot = _snapshot(self.root)
            if self._tree is not None and snapshot == self._snapshot:
                return False
            self._tree = load_tree(self.root)
            self._snapshot = snapshot
            self.version += 1
            return True


def _snapshot(root: Path) -> Snapshot:
    found: Snapshot = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:  # removed while walking: the next check sees it
                continue
            found[path] = (stat.st_mtime_ns, stat.st_size)
    return found
