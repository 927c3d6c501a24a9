"""Terminal tabs: shells in a machine that outlive the connection that opened them.

A tab is a tmux session on a private tmux socket (`-L labyard`) in the machine. Attaching
with `new-session -A` creates it the first time and reattaches afterwards, so a page reload
or a dropped WebSocket finds the same shell, its running jobs and its history. Machines
without tmux get a plain login shell (which ends with the connection).

The tmux configuration makes the multiplexer invisible: no status bar, no prefix key (C-b
stays readline's "back one character"), no mouse capture, no Escape delay. It keeps the
outer terminal's normal screen (no alternate screen), so lines scrolling off the top land
in the browser terminal's own scrollback (`indn@`: scrolling by newlines, not CSI S, which
would drop them); on reattach, tmux's history is replayed there. tmux paints screens rather
than streaming bytes: a burst of more than a screenful of lines in one read reaches the
browser as its last screen, and the lines in between only with the next reattach.
"""

from __future__ import annotations

import re
import shlex
from types import TracebackType

from labyard.access import Connection, PtySession
from labyard.errors import InvalidInput
from labyard.services.playgrounds import Playgrounds

TAB_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
DEFAULT_TAB = "main"
MAX_COLS = 500
MAX_ROWS = 200
REPLAY_LINES = 10_000
"""History lines replayed on reattach; the browser keeps as many in its scrollback."""

CONF_PATH = "/etc/labyard/tmux.conf"
# Written only when absent, so an image may ship its own. `default-command` unsets TMUX so
# a learner can run their own tmux inside the tab as if no tmux were there.
TMUX_CONF = f"""\
# labyard web terminal: one invisible tmux session per browser tab.
set -g status off
set -g prefix None
set -g prefix2 None
unbind C-b
set -g mouse off
set -sg escape-time 0
set -g history-limit {REPLAY_LINES}
set -g default-terminal "xterm-256color"
set -ga terminal-overrides ",xterm*:smcup@:rmcup@:indn@"
set -as terminal-features ",xterm*:RGB"
setw -g aggressive-resize on
set -g set-titles off
set -g default-command 'unset TMUX TMUX_PANE; exec "${{SHELL:-/bin/sh}}" -l'
"""


def check_tab(tab: str) -> str:
    if not TAB_NAME.fullmatch(tab):
        raise InvalidInput("a tab name is 1-32 letters, digits, '-' or '_'")
    return tab


def check_size(cols: int, rows: int) -> tuple[int, int]:
    """Clamp a requested terminal size to something a PTY and tmux accept."""
    return max(2, min(cols, MAX_COLS)), max(2, min(rows, MAX_ROWS))


def attach_command(tab: str, rows: int) -> str:
    """The shell command run on the PTY: write the tmux config if absent; if the tab exists
    and has history, replay it (then `rows - 1` newlines push it from the fresh screen into
    the scrollback, before tmux redraws the screen); attach. A login shell without tmux."""
    session = shlex.quote(f"={tab}:")
    tmux = f"tmux -u -L labyard -f {CONF_PATH}"
    return "\n".join(
        [
            "if command -v tmux >/dev/null 2>&1; then",
            f"  if [ ! -f {CONF_PATH} ]; then mkdir -p /etc/labyard &&",
            f"    printf %s {shlex.quote(TMUX_CONF)} > {CONF_PATH}.$$ &&",
            f"    mv {CONF_PATH}.$$ {CONF_PATH}; fi",
            f"  lines=$({tmux} display-message -p -t {session} '#{{history_size}}' 2>/dev/null)",
            '  if [ "${lines:-0}" -gt 0 ]; then',
            f"    {tmux} capture-pane -p -e -J -S -{REPLAY_LINES} -E -1 -t {session}",
            f"    printf '\\033[0m%{max(rows - 1, 0)}s' '' | tr ' ' '\\n'",
            "  fi",
            f"  exec {tmux} new-session -A -s {shlex.quote(tab)}",
            "fi",
            'exec "${SHELL:-/bin/sh}" -l',
        ]
    )


class Terminal:
    """An attached terminal tab: the SSH connection and the PTY riding on it."""

    def __init__(self, connection: Connection, pty: PtySession) -> None:
        self.connection = connection
        self.pty = pty

    async def close(self) -> None:
        """Detach (tmux keeps the session) and hang up the SSH connection."""
        self.pty.close()
        self.connection.close()
        await self.connection.wait_closed()

    async def __aenter__(self) -> Terminal:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def open_terminal(
    playgrounds: Playgrounds,
    playground_id: str,
    machine: str,
    owner: str,
    *,
    tab: str = DEFAULT_TAB,
    cols: int = 80,
    rows: int = 24,
) -> Terminal:
    """Attach to terminal tab `tab` of `machine` (created on first use). NotFound when the
    playground is not `owner`'s or has no such machine; Conflict when it is not running."""
    check_tab(tab)
    cols, rows = check_size(cols, rows)
    connection = await playgrounds.connect(playground_id, machine, owner=owner)
    try:
        pty = await connection.open_pty(attach_command(tab, rows), cols=cols, rows=rows)
    except BaseException:
        connection.close()
        raise
    return Terminal(connection, pty)
