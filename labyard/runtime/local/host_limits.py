"""Host kernel limits that a host full of system containers outgrows.

Without user namespaces every machine's systemd, dbus and logind count against root's
inotify limits. Debian's default of 128 instances runs out at about 15 booting machines:
PID 1 then fails with "Failed to create inotify object" and the machine never answers.
scripts/setup.sh makes the higher values permanent; this raises them for a host that was
set up otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

INOTIFY = Path("/proc/sys/fs/inotify")
MINIMUMS = {"max_user_instances": 8192, "max_user_watches": 524288}


def raise_inotify_limits() -> None:
    for name, minimum in MINIMUMS.items():
        path = INOTIFY / name
        try:
            if int(path.read_text()) < minimum:
                path.write_text(f"{minimum}\n")
                log.info("raised fs.inotify.%s to %d", name, minimum)
        except (OSError, ValueError) as exc:
            log.warning("cannot raise fs.inotify.%s to %d: %s", name, minimum, exc)
